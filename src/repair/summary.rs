//! What a repair run did, counted per message, and how it is reported: text, or one JSON
//! object as the last line of stdout.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Shard;

/// `1 message`, `2 messages`.
fn counted(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub command: &'static str,
    pub dry_run: bool,
    /// Landing objects read.
    pub objects: u64,
    /// Messages read from them (each once).
    pub examined: u64,
    /// Batch layout: further lines of a message already read in this run (its redeliveries),
    /// skipped.
    pub repeated: u64,
    /// Messages newly written to the warehouse (with `--dry-run`: that would be).
    pub landed: u64,
    /// Messages whose row (or event) was already there: nothing written.
    pub already_present: u64,
    /// Redrive: dead letters the current catalog still refuses; they stay where they are.
    pub still_dead: u64,
    /// Backfill: events the current catalog refuses; reported, not moved.
    pub refused: u64,
    /// Messages (or objects) that could not be read or written: run again.
    pub failed: u64,
    /// Still-dead and refused messages by the rule they break.
    pub by_rule: BTreeMap<String, u64>,
    pub task_index: u32,
    pub task_count: u32,
}

impl Summary {
    pub fn new(command: &'static str, dry_run: bool, shard: Shard) -> Self {
        Summary {
            command,
            dry_run,
            task_index: shard.index,
            task_count: shard.count,
            ..Default::default()
        }
    }

    /// A message or object that failed: counted, and logged with what failed (never data).
    pub fn failure(&mut self, message_id: Option<&str>, why: &str) {
        self.failed += 1;
        match message_id {
            Some(id) => {
                tracing::error!(message_id = id, error = why, "repair failed for a message")
            }
            None => tracing::error!(error = why, "repair failed for an object"),
        }
    }

    /// A message the current catalog (or a warehouse) refuses: still dead for redrive,
    /// refused for backfill; counted by the rule it breaks.
    pub fn not_written(&mut self, rule: &str) {
        match self.command {
            "redrive" => self.still_dead += 1,
            _ => self.refused += 1,
        }
        *self.by_rule.entry(rule.to_string()).or_default() += 1;
    }

    pub fn succeeded(&self) -> bool {
        self.failed == 0
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }

    pub fn text(&self) -> String {
        let (head, landed) = if self.dry_run {
            (" — dry run, nothing was written", "would land:     ")
        } else {
            ("", "landed:         ")
        };
        let mut lines = vec![
            format!(
                "{}{head}: {} in {}",
                self.command,
                counted(self.examined, "message"),
                counted(self.objects, "object")
            ),
            format!("  {landed} {}", self.landed),
            format!("  already present: {}", self.already_present),
        ];
        if self.repeated > 0 {
            lines.push(format!(
                "  repeated lines:  {} (redeliveries, read once)",
                self.repeated
            ));
        }
        let (label, count) = match self.command {
            "redrive" => ("still dead:     ", self.still_dead),
            _ => ("refused:        ", self.refused),
        };
        let rules: Vec<String> = self
            .by_rule
            .iter()
            .map(|(rule, n)| format!("{rule}: {n}"))
            .collect();
        match rules.is_empty() {
            true => lines.push(format!("  {label} {count}")),
            false => lines.push(format!("  {label} {count} ({})", rules.join(", "))),
        }
        lines.push(format!("  failed:          {}", self.failed));
        if self.task_count > 1 {
            lines.push(format!(
                "  task {} of {}",
                self.task_index + 1,
                self.task_count
            ));
        }
        lines.join("\n")
    }
}
