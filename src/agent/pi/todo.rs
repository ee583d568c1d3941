//! Todo snapshots from Pi's todo tool results (seed 5.1.4).

use serde_json::{Map, Value};

use super::stream::{is_true, str_field};
use crate::job::outcome::{TodoItem, TodoProgress, TodoStatus};

/// A todo snapshot from an rpiv-todo (or example-extension) result event (seed 5.1.4).
pub fn parse_todo_progress(event: &Value) -> Option<TodoProgress> {
    let (holder, details) = match str_field(event, "type")? {
        "tool_execution_end" => (event, event.get("result")?.get("details")?),
        "message_end" => {
            let message = event.get("message")?;
            if str_field(message, "role") != Some("toolResult") {
                return None;
            }
            (message, message.get("details")?)
        }
        "tool_result" => (event, event.get("details")?),
        _ => return None,
    };
    if str_field(holder, "toolName") != Some("todo") || is_true(holder, "isError") {
        return None;
    }
    progress_from_details(details.as_object()?)
}

fn progress_from_details(details: &Map<String, Value>) -> Option<TodoProgress> {
    if let Some(tasks) = details.get("tasks").and_then(Value::as_array) {
        let items: Vec<TodoItem> = tasks
            .iter()
            .filter(|t| str_field(t, "status") != Some("deleted"))
            .map(|t| TodoItem {
                label: task_label(t),
                status: match str_field(t, "status") {
                    Some("completed") => TodoStatus::Completed,
                    Some("in_progress") => TodoStatus::InProgress,
                    _ => TodoStatus::Pending,
                },
            })
            .collect();
        let of = |s: TodoStatus| items.iter().filter(|i| i.status == s).count() as u64;
        return Some(TodoProgress {
            completed: of(TodoStatus::Completed),
            in_progress: of(TodoStatus::InProgress),
            total: items.len() as u64,
            items: Some(items),
        });
    }
    if let Some(todos) = details.get("todos").and_then(Value::as_array) {
        return Some(TodoProgress {
            completed: todos.iter().filter(|t| is_true(t, "done")).count() as u64,
            in_progress: 0,
            total: todos.len() as u64,
            items: None,
        });
    }
    None
}

fn task_label(task: &Value) -> String {
    ["subject", "title", "content", "text", "name", "task"]
        .iter()
        .filter_map(|k| str_field(task, k))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("Untitled task")
        .to_owned()
}
