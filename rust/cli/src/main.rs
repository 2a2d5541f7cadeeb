//! `mcp-v8-cli`: submit code to an mcp-v8 server, stream its console output, read
//! results, list, cancel. One binary, no runtime dependencies beyond libc.
//!
//! Exit codes: 0 completed (or the command succeeded), 1 the execution failed,
//! 2 usage error, 3 connection or HTTP error, 4 timed out, 5 cancelled.

mod client;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use client::{CliError, Client};

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
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        status: Option<String>,
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
        Command::Executions(ExecutionsCommand::List { limit, status }) => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(s) = status {
                query.push(("status", s.clone()));
            }
            let v = client.get("/api/executions", &query)?;
            if cli.json {
                print_json(&v);
            } else {
                for e in v["executions"].as_array().into_iter().flatten() {
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
