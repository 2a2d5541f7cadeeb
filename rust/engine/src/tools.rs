//! Tool calls out of JavaScript: web.js's `tools.<server>.<tool>(args)` and
//! `mcp.callTool(server, tool, args)` call the host function named [`TOOL`] with one argument,
//! `{call_id, server, tool, arguments}` (`arguments`: the JSON text of the script's object;
//! `call_id`: the script's own number for the call, kept in its heap). An execution hands them
//! to its tool relay (`engine::Options::tool_relay`); without one they are refused.
//!
//! The relay answers a call, as a value (`Replies::post` with `ok`), with one of
//! `{"value": ...}` (the result), `{"error": {"name", "message", ...}}` (the script gets a
//! `ToolError`, `ToolDenied`, `TypeError`, ...: see web.js) or `{"held": true}`: the call
//! stays pending in the heap, to be settled later by its `call_id`, in this isolate or in one
//! restored from a snapshot of it (web.js's `settleToolCall`).

use serde_json::json;

use crate::host_calls::Replies;

/// The name web.js's native tool call carries (`cpp/web.cc`).
pub const TOOL: &str = "mcp-v8:tool";

/// What a tool call answers where nothing relays them.
pub const TOOLS_OFF: &str = "tool call refused: no tools are available in this execution";

/// Answers a tool call where nothing relays them.
pub(crate) fn refuse_off(replies: &Replies, call_id: u64) {
    let json = json!({"error": {"name": "TypeError", "message": TOOLS_OFF}}).to_string();
    replies.post(call_id, true, &json, &[]);
}
