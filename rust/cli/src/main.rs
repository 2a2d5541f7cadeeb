//! `mcp-v8-cli`: submit code to an mcp-v8 server, stream its console output, read
//! results, list, cancel, read sessions, inspect, tag, query and delete heap snapshots. One binary, no runtime dependencies beyond libc.
//!
//! Exit codes: 0 completed (or the command succeeded), 1 the execution failed,
//! 2 usage error, 3 connection or HTTP error, 4 timed out, 5 cancelled.

mod client;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use client::{path_segment, CliError, Client};

#[derive(Parser)]
#[command(name = "mcp-v8-cli", version, about = "Client of the mcp-v8 HTTP API")]
struct Cli {
    /// Server base URL
    #[arg(
        long,
        global = true,
        env = "MCP_V8_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    url: String,
    /// Bearer token, when the server requires one
    #[arg(long, global = true, env = "MCP_V8_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Submit code for execution
    Exec(ExecArgs),
    /// List, inspect, read output of, or cancel executions
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// List sessions, or show one session's log
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show, tag, query or delete stored heap snapshots
    #[command(subcommand)]
    Heaps(HeapsCommand),
    /// Print the server's and this client's versions
    Version,
}

#[derive(Args)]
struct ExecArgs {
    /// The code (JavaScript or TypeScript); use --file or - for standard input instead
    code: Option<String>,
    /// Read the code from a file (`-` for standard input)
    #[arg(long, short, conflicts_with = "code")]
    file: Option<String>,
    /// Resume from this heap snapshot key
    #[arg(long)]
    heap: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// A tag for the snapshot, key=value (repeatable)
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    #[arg(long)]
    heap_memory_max_mb: Option<u64>,
    #[arg(long)]
    execution_timeout_secs: Option<u64>,
    /// Take no heap snapshot: run in a plain isolate (with WebAssembly), resumed from
    /// --heap if given; the execution's heap is null (default: the server's setting)
    #[arg(long)]
    no_snapshot: bool,
    /// Stream console output while it runs, then print the result (or the error) and
    /// exit with the matching code
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
enum ExecutionsCommand {
    /// List executions, newest first
    List {
        /// How many to list in all (following the server's pages)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Only executions in this status
        #[arg(long)]
        status: Option<String>,
        /// Only executions of this session (any characters)
        #[arg(long)]
        session: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one execution
    Get { id: String },
    /// Print the console output of an execution
    Output {
        id: String,
        /// Keep printing until the execution ends
        #[arg(long)]
        follow: bool,
    },
    /// Cancel an execution
    Cancel { id: String },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// List sessions, latest activity first: name, executions, last activity, latest heap
    List {
        /// Print at most this many (default: every session)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a session's log, oldest first: execution, status, heap_in -> heap, start, tags
    Show {
        /// The session name (any characters)
        session: String,
        /// Print at most this many (default: every execution of the session)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        #[command(flatten)]
        paging: Paging,
    },
}

#[derive(Subcommand)]
enum HeapsCommand {
    /// Show a heap snapshot's metadata: key, size, created, last used, session, tags
    Show {
        /// The heap snapshot key
        key: String,
    },
    /// Find the heap snapshots whose tags hold every key=value given, newest first
    Query {
        /// key=value pairs every heap found has among its tags
        #[arg(required = true, value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Print at most this many (default: every heap found)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Change a heap snapshot's tags: key=value sets key, key= removes it; prints the result
    Tag {
        /// The heap snapshot key
        key: String,
        /// key=value to set, key= to remove
        #[arg(required = true, value_parser = parse_tag)]
        tags: Vec<(String, String)>,
    },
    /// Remove a heap snapshot and its metadata
    Delete {
        /// The heap snapshot key
        key: String,
    },
}

#[derive(Args)]
struct Paging {
    /// How many items to ask the server for per request (1-1000)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    page_size: u64,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("tag must be key=value, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = Client::new(&cli.url, cli.token.clone());
    match run(&cli, &client) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("mcp-v8-cli: {e}");
            ExitCode::from(if matches!(e, CliError::Usage(_)) {
                2
            } else {
                3
            })
        }
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn run(cli: &Cli, client: &Client) -> Result<u8, CliError> {
    match &cli.command {
        Command::Version => {
            let v = client.get("/api/version", &[])?;
            if cli.json {
                print_json(&v);
            } else {
                println!("server {} (V8 {})", str_of(&v, "version"), str_of(&v, "v8"));
                println!("client {}", env!("CARGO_PKG_VERSION"));
            }
            Ok(0)
        }
        Command::Exec(args) => exec(cli, client, args),
        Command::Sessions(command) => sessions(cli, client, command),
        Command::Heaps(command) => heaps(cli, client, command),
        Command::Executions(ExecutionsCommand::List {
            limit,
            status,
            session,
            paging,
        }) => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(("status", s.clone()));
            }
            if let Some(s) = session {
                query.push(("session", s.clone()));
            }
            let (executions, next_cursor) = collect_pages(
                client,
                "/api/executions",
                &query,
                "executions",
                Some(*limit),
                paging.page_size,
            )?;
            if cli.json {
                // The shape of one page, holding every page read: next_cursor continues the listing.
                print_json(&json!({"executions": executions, "next_cursor": next_cursor}));
            } else {
                for e in &executions {
                    println!(
                        "{}  {:<9}  {}  {}",
                        str_of(e, "execution_id"),
                        str_of(e, "status"),
                        str_of(e, "started_at"),
                        e["completed_at"].as_str().unwrap_or("-")
                    );
                }
            }
            Ok(0)
        }
        Command::Executions(ExecutionsCommand::Get { id }) => {
            let v = client.get(&format!("/api/executions/{id}"), &[])?;
            if cli.json {
                print_json(&v);
            } else {
                for key in [
                    "execution_id",
                    "status",
                    "started_at",
                    "completed_at",
                    "heap",
                    "result",
                    "error",
                ] {
                    if let Some(s) = v[key].as_str() {
                        println!("{key}: {s}");
                    }
                }
            }
            Ok(0)
        }
        Command::Executions(ExecutionsCommand::Output { id, follow }) => {
            let status = stream_output(client, id, *follow)?;
            Ok(if *follow { exit_code(&status) } else { 0 })
        }
        Command::Executions(ExecutionsCommand::Cancel { id }) => {
            let v =
                client.post_allow(&format!("/api/executions/{id}/cancel"), &json!({}), &[400])?;
            if cli.json {
                print_json(&v);
            } else if v["ok"].as_bool() == Some(true) {
                println!("cancelled {id}");
            } else {
                eprintln!(
                    "not cancelled: {}",
                    v["error"].as_str().unwrap_or("refused")
                );
                return Ok(1);
            }
            Ok(0)
        }
    }
}

/// Reads a cursor-paged listing from its first page, following `next_cursor`, gathering the
/// `key` arrays: up to `limit` items in all (every item when `None`). No request asks for more
/// than remain, so the returned cursor (that of the last page read, `None` when it was the last)
/// continues the listing right after the last item returned.
fn collect_pages(
    client: &Client,
    path: &str,
    query: &[(&str, String)],
    key: &str,
    limit: Option<u64>,
    page_size: u64,
) -> Result<(Vec<Value>, Option<String>), CliError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let remaining = limit.map(|l| l.saturating_sub(items.len() as u64));
        if remaining == Some(0) {
            return Ok((items, cursor));
        }
        let ask = remaining.map_or(page_size, |r| r.min(page_size));
        let mut q = query.to_vec();
        q.push(("limit", ask.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let mut page = client.get(path, &q)?;
        let got = match page[key].take() {
            Value::Array(a) => a,
            _ => return Err(bad_page(client, path, key)),
        };
        let next = page["next_cursor"].as_str().map(str::to_string);
        if got.is_empty() && next.is_some() {
            // a page that moves nothing on would be read again forever
            return Err(bad_page(client, path, key));
        }
        items.extend(got);
        if let Some(l) = limit {
            items.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        cursor = next;
        if cursor.is_none() {
            return Ok((items, None));
        }
    }
}

fn bad_page(client: &Client, path: &str, key: &str) -> CliError {
    CliError::Connect(format!(
        "bad response from {}: {path} gave no page of {key}",
        client.base()
    ))
}

fn sessions(cli: &Cli, client: &Client, command: &SessionsCommand) -> Result<u8, CliError> {
    match command {
        SessionsCommand::List { limit, paging } => {
            let (sessions, _) = collect_pages(
                client,
                "/api/sessions",
                &[],
                "sessions",
                *limit,
                paging.page_size,
            )?;
            if cli.json {
                print_json(&Value::Array(sessions));
                return Ok(0);
            }
            let rows: Vec<[String; 4]> = sessions
                .iter()
                .map(|s| {
                    [
                        printable(str_of(s, "session")),
                        s["executions"].as_u64().unwrap_or(0).to_string(),
                        str_of(s, "last_activity_at").to_string(),
                        heap_shown(s, "latest_heap", "latest_heap_stored"),
                    ]
                })
                .collect();
            let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            let (name_w, count_w) = (width(0), width(1));
            for [name, count, last, heap] in &rows {
                let pad = name_w - name.chars().count();
                println!("{name}{:pad$}  {count:>count_w$}  {last}  {heap}", "");
            }
            Ok(0)
        }
        SessionsCommand::Show {
            session,
            limit,
            paging,
        } => {
            let (entries, _) = collect_pages(
                client,
                "/api/sessions/log",
                &[("session", session.clone())],
                "executions",
                *limit,
                paging.page_size,
            )?;
            if cli.json {
                print_json(&Value::Array(entries));
                return Ok(0);
            }
            for e in &entries {
                let tags = tag_pairs(&e["tags"]);
                let line = format!(
                    "{}  {:<9}  {} -> {}  {}  {}",
                    str_of(e, "execution_id"),
                    str_of(e, "status"),
                    e["heap_in"].as_str().unwrap_or("-"),
                    heap_shown(e, "heap", "heap_stored"),
                    str_of(e, "started_at"),
                    tags.join(" ")
                );
                println!("{}", line.trim_end());
            }
            Ok(0)
        }
    }
}

/// A heap key of a listing, "-" when there is none, marked "(gone)" when the server says it
/// is no longer stored (pruned or deleted since the execution produced it).
fn heap_shown(item: &Value, key: &str, stored: &str) -> String {
    match item[key].as_str() {
        None => "-".to_string(),
        Some(k) if item[stored] == Value::Bool(false) => format!("{k} (gone)"),
        Some(k) => k.to_string(),
    }
}

fn heaps(cli: &Cli, client: &Client, command: &HeapsCommand) -> Result<u8, CliError> {
    match command {
        HeapsCommand::Show { key } => {
            let info = client.get(&format!("/api/heaps/{}", path_segment(key)), &[])?;
            print_heap(cli, &info);
            Ok(0)
        }
        HeapsCommand::Tag { key, tags } => {
            // RFC 7396: a string sets the key, null removes it; the last of a key given twice wins
            let patch: Map<String, Value> = tags
                .iter()
                .map(|(k, v)| {
                    let v = if v.is_empty() { Value::Null } else { json!(v) };
                    (k.clone(), v)
                })
                .collect();
            let info = client.patch(
                &format!("/api/heaps/{}/tags", path_segment(key)),
                &Value::Object(patch),
            )?;
            print_heap(cli, &info);
            Ok(0)
        }
        HeapsCommand::Delete { key } => {
            let v = client.delete(&format!("/api/heaps/{}", path_segment(key)))?;
            if cli.json {
                print_json(&v);
            } else {
                println!("ok");
            }
            Ok(0)
        }
        HeapsCommand::Query {
            tags,
            limit,
            paging,
        } => {
            let tags: Map<String, Value> =
                tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let heaps = query_heaps(client, &tags, *limit, paging.page_size)?;
            if cli.json {
                print_json(&Value::Array(heaps));
                return Ok(0);
            }
            for h in &heaps {
                let line = format!(
                    "{}  {}  {}  {}",
                    str_of(h, "heap"),
                    h["size_bytes"].as_u64().unwrap_or(0),
                    str_of(h, "created_at"),
                    tag_pairs(&h["tags"]).join(" ")
                );
                println!("{}", line.trim_end());
            }
            Ok(0)
        }
    }
}

/// POST /api/heaps/query from the first page, following `next_cursor` (sent back as `cursor`):
/// up to `limit` heaps in all (every heap found when `None`).
fn query_heaps(
    client: &Client,
    tags: &Map<String, Value>,
    limit: Option<u64>,
    page_size: u64,
) -> Result<Vec<Value>, CliError> {
    let path = "/api/heaps/query";
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let remaining = limit.map(|l| l.saturating_sub(items.len() as u64));
        if remaining == Some(0) {
            return Ok(items);
        }
        let mut body = json!({
            "tags": tags,
            "limit": remaining.map_or(page_size, |r| r.min(page_size)),
        });
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let mut page = client.post(path, &body)?;
        let got = match page["heaps"].take() {
            Value::Array(a) => a,
            _ => return Err(bad_page(client, path, "heaps")),
        };
        let next = page["next_cursor"].as_str().map(str::to_string);
        if got.is_empty() && next.is_some() {
            return Err(bad_page(client, path, "heaps"));
        }
        items.extend(got);
        if let Some(l) = limit {
            items.truncate(usize::try_from(l).unwrap_or(usize::MAX));
        }
        cursor = next;
        if cursor.is_none() {
            return Ok(items);
        }
    }
}

/// A HeapInfo as JSON, or as `name: value` lines with its tags as `key=value` lines.
fn print_heap(cli: &Cli, info: &Value) {
    if cli.json {
        print_json(info);
        return;
    }
    println!("key: {}", str_of(info, "heap"));
    println!("size: {} bytes", info["size_bytes"].as_u64().unwrap_or(0));
    println!("created: {}", str_of(info, "created_at"));
    println!("last used: {}", str_of(info, "last_used_at"));
    println!(
        "session: {}",
        info["session"].as_str().map_or("-".to_string(), printable)
    );
    let tags = tag_pairs(&info["tags"]);
    if tags.is_empty() {
        println!("tags: -");
    } else {
        println!("tags:");
        for t in tags {
            println!("  {t}");
        }
    }
}

/// A tags object as printable `key=value` strings, sorted by key.
fn tag_pairs(tags: &Value) -> Vec<String> {
    tags.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| printable(&format!("{k}={}", v.as_str().unwrap_or(""))))
        .collect()
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`...), so it stays on its line.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn exit_code(status: &str) -> u8 {
    match status {
        "completed" => 0,
        "timed_out" => 4,
        "cancelled" => 5,
        _ => 1,
    }
}

fn read_code(args: &ExecArgs) -> Result<String, CliError> {
    let from_stdin = || -> Result<String, CliError> {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
        Ok(s)
    };
    match (&args.code, &args.file) {
        (Some(c), _) if c == "-" => from_stdin(),
        (Some(c), _) => Ok(c.clone()),
        (None, Some(f)) if f == "-" => from_stdin(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("reading {f}: {e}")))
        }
        (None, None) => Err(CliError::Usage(
            "give the code, --file FILE, or - for standard input".into(),
        )),
    }
}

fn exec(cli: &Cli, client: &Client, args: &ExecArgs) -> Result<u8, CliError> {
    let code = read_code(args)?;
    let mut body = Map::new();
    body.insert("code".into(), Value::String(code));
    if let Some(h) = &args.heap {
        body.insert("heap".into(), json!(h));
    }
    if let Some(s) = &args.session {
        body.insert("session".into(), json!(s));
    }
    if !args.tags.is_empty() {
        let tags: Map<String, Value> = args
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        body.insert("tags".into(), Value::Object(tags));
    }
    if let Some(n) = args.heap_memory_max_mb {
        body.insert("heap_memory_max_mb".into(), json!(n));
    }
    if let Some(n) = args.execution_timeout_secs {
        body.insert("execution_timeout_secs".into(), json!(n));
    }
    if args.no_snapshot {
        body.insert("snapshot".into(), json!(false));
    }
    let accepted = client.post("/api/exec", &Value::Object(body))?;
    let id = str_of(&accepted, "execution_id").to_string();
    if !args.wait {
        if cli.json {
            print_json(&accepted);
        } else {
            println!("{id}");
        }
        return Ok(0);
    }
    stream_output(client, &id, true)?;
    let info = client.get(&format!("/api/executions/{id}"), &[])?;
    let status = str_of(&info, "status").to_string();
    if cli.json {
        print_json(&info);
    } else if status == "completed" {
        println!("{}", info["result"].as_str().unwrap_or("null"));
    } else {
        eprintln!("{}", info["error"].as_str().unwrap_or(&status));
    }
    Ok(exit_code(&status))
}

/// Prints the console output from the start; with `follow`, until the execution ends.
/// Returns the last status seen.
fn stream_output(client: &Client, id: &str, follow: bool) -> Result<String, CliError> {
    let mut cursor: u64 = 0;
    let stdout = std::io::stdout();
    loop {
        let page = client.get(
            &format!("/api/executions/{id}/output"),
            &[("byte_offset", cursor.to_string())],
        )?;
        let data = str_of(&page, "data");
        if !data.is_empty() {
            let mut out = stdout.lock();
            let _ = out.write_all(data.as_bytes());
            let _ = out.flush();
        }
        cursor = page["next_byte_offset"].as_u64().unwrap_or(cursor);
        let status = str_of(&page, "status").to_string();
        let has_more = page["has_more"].as_bool().unwrap_or(false);
        if has_more {
            continue;
        }
        if !follow || status != "running" {
            // a terminal status read before the last page: one more read drains it
            let last = client.get(
                &format!("/api/executions/{id}/output"),
                &[("byte_offset", cursor.to_string())],
            )?;
            let rest = str_of(&last, "data");
            if !rest.is_empty() {
                let mut out = stdout.lock();
                let _ = out.write_all(rest.as_bytes());
                let _ = out.flush();
                cursor = last["next_byte_offset"].as_u64().unwrap_or(cursor);
                if last["has_more"].as_bool().unwrap_or(false) {
                    continue;
                }
            }
            return Ok(status);
        }
        // Long-poll: returns at once when the execution ends, else after the wait.
        client.get(
            &format!("/api/executions/{id}"),
            &[("wait_ms", "250".into())],
        )?;
        std::thread::sleep(Duration::from_millis(20));
    }
}
