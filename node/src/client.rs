//! The operator's CLI: `ordo health`, `ordo status`, `ordo sql` and
//! `ordo admin`, each a client of any node's HTTP API.

use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};

use crate::cli::{AdminCommand, ClientArgs, SqlArgs, StatusArgs, WaitArgs};
use crate::constants::{ADMIN_POLL_MS, CLI_CALL_TIMEOUT_MS, HEALTH_TIMEOUT_MS};

/// A node's HTTP API.
struct Node {
    base: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Node {
    fn new(args: &ClientArgs, timeout_ms: u64) -> anyhow::Result<Node> {
        let http = reqwest::Client::builder().timeout(Duration::from_millis(timeout_ms)).build()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Node { base: format!("http://{}", args.http), http, rt })
    }

    /// The status and JSON body of `GET path` (or `POST path` with `body`).
    fn call(&self, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        self.rt.block_on(async {
            let response = request.send().await.with_context(|| format!("no answer from {url}"))?;
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.with_context(|| format!("reading the answer of {url}"))?;
            Ok((status, body))
        })
    }

    /// Like [`Node::call`], with a non-2xx answer as an error.
    fn ok(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, answer) = self.call(path, body)?;
        anyhow::ensure!((200..300).contains(&status), "{}", describe_error(status, &answer));
        Ok(answer)
    }
}

fn describe_error(status: u16, answer: &Value) -> String {
    match (&answer["error"]["code"], &answer["error"]["message"]) {
        (Value::String(code), Value::String(message)) => format!("ERROR {code}: {message}"),
        _ => format!("HTTP {status}: {answer}"),
    }
}

/// `ordo health`: 0 when the node is healthy.
pub fn health(args: ClientArgs) -> anyhow::Result<()> {
    let node = Node::new(&args, HEALTH_TIMEOUT_MS)?;
    let (status, body) = node.call("/health", None)?;
    println!("{body}");
    anyhow::ensure!(status == 200, "node {} is not healthy", args.http);
    Ok(())
}

/// `ordo status`: every group as its leader sees it.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let node = Node::new(&args.client, CLI_CALL_TIMEOUT_MS)?;
    let answer = node.ok("/v1/admin/status", None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!("{}", status_table(&answer));
    let groups = answer["groups"].as_array().cloned().unwrap_or_default();
    let mut led: std::collections::BTreeMap<String, usize> = Default::default();
    for g in &groups {
        *led.entry(g["leader"].to_string()).or_default() += 1;
    }
    let summary: Vec<String> = led.iter().map(|(n, c)| format!("node {n}: {c}")).collect();
    println!("{} groups; leaders by node: {}", groups.len(), summary.join(", "));
    println!("drained: {}; pinned: {}", answer["drained"], answer["pinned"]);
    if let Some(e) = answer["catalog_error"].as_str() {
        println!("warning: {e}");
    }
    Ok(())
}

fn status_table(answer: &Value) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["group", "kind", "leader", "target", "term", "commit", "applied", "lag by node", "error"]);
    for g in answer["groups"].as_array().into_iter().flatten() {
        let lag: Vec<String> = g["lag"].as_object().into_iter().flatten().map(|(n, l)| format!("{n}:{l}")).collect();
        t.add_row([
            cell(&g["group_id"]),
            cell(&g["kind"]),
            cell(&g["leader"]),
            cell(&g["target_leader"]),
            cell(&g["term"]),
            cell(&g["commit_index"]),
            cell(&g["applied_index"]),
            lag.join(" "),
            cell(&g["error"]),
        ]);
    }
    t
}

/// A JSON value as a table cell: strings without quotes, null as empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ordo sql`: one request, or a prompt.
pub fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let node = Node::new(&args.client, CLI_CALL_TIMEOUT_MS)?;
    let params: Vec<Value> = args.params.iter().map(|p| serde_json::from_str(p).unwrap_or_else(|_| json!(p))).collect();
    match &args.sql {
        Some(sql) => run_sql(&node, sql, &params, args.json),
        None => prompt(&node, args.json),
    }
}

fn run_sql(node: &Node, sql: &str, params: &[Value], as_json: bool) -> anyhow::Result<()> {
    let answer = node.ok("/v1/sql", Some(&json!({"sql": sql, "params": params})))?;
    if as_json {
        println!("{answer}");
        return Ok(());
    }
    for result in answer["results"].as_array().into_iter().flatten() {
        print_result(result);
    }
    Ok(())
}

fn print_result(result: &Value) {
    let columns = result["columns"].as_array().cloned().unwrap_or_default();
    if columns.is_empty() {
        println!("OK, {} rows affected", result["rows_affected"]);
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(columns.iter().map(|c| cell(&c["name"])));
    let rows = result["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        t.add_row(row.as_array().into_iter().flatten().map(cell));
    }
    println!("{t}");
    println!("({} rows)", rows.len());
}

/// Reads statements ending in `;` (over several lines) and runs each;
/// history in `~/.ordo_history`. Ctrl-D or `\q` ends it.
fn prompt(node: &Node, as_json: bool) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".ordo_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut pending = String::new();
    loop {
        let line = match editor.readline(if pending.is_empty() { "ordo> " } else { "   -> " }) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        if pending.is_empty() && line.trim() == "\\q" {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(sql.trim());
        if let Err(e) = run_sql(node, &sql, &[], as_json) {
            eprintln!("{e:#}");
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

/// `ordo admin ...`.
pub fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::TransferLeader { client, group, to, wait } => {
            let node = Node::new(&client, CLI_CALL_TIMEOUT_MS)?;
            node.ok("/v1/admin/leadership", Some(&json!({"change": "pin", "group": group, "node": to})))?;
            println!("group {group} pinned to node {to}");
            wait_for(&node, &wait, &format!("node {to} to lead group {group}"), |s| {
                groups(s).any(|g| g["group_id"] == group && g["leader"] == to)
            })
        }
        AdminCommand::StepDown { client, node: n, wait } => {
            let node = Node::new(&client, CLI_CALL_TIMEOUT_MS)?;
            node.ok("/v1/admin/leadership", Some(&json!({"change": "drain", "node": n})))?;
            println!("node {n} drained: its leaders move to other replicas");
            wait_for(&node, &wait, &format!("node {n} to lead no group"), |s| {
                groups(s).all(|g| g["leader"] != n && g["error"].is_null())
            })
        }
        AdminCommand::StepUp { client, node: n } => {
            let node = Node::new(&client, CLI_CALL_TIMEOUT_MS)?;
            node.ok("/v1/admin/leadership", Some(&json!({"change": "undrain", "node": n})))?;
            println!("node {n} may lead again: its preferred groups move back within seconds");
            Ok(())
        }
        AdminCommand::Unpin { client, group } => {
            let node = Node::new(&client, CLI_CALL_TIMEOUT_MS)?;
            node.ok("/v1/admin/leadership", Some(&json!({"change": "unpin", "group": group})))?;
            println!("group {group} unpinned");
            Ok(())
        }
    }
}

fn groups(status: &Value) -> impl Iterator<Item = &Value> {
    status["groups"].as_array().into_iter().flatten()
}

/// Polls the cluster's status until `done` holds or `wait` runs out.
fn wait_for(node: &Node, wait: &WaitArgs, what: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<()> {
    if wait.wait_s == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait.wait_s);
    loop {
        // A status being gathered by someone else (53300) is retried.
        if let Ok(status) = node.ok("/v1/admin/status", None) {
            if done(&status) {
                println!("done: {what}");
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "gave up waiting for {what} after {} s", wait.wait_s);
        std::thread::sleep(Duration::from_millis(ADMIN_POLL_MS));
    }
}
