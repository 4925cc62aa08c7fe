//! The `--help` text, generated from the variable table.

use super::variables::VARIABLES;

/// The `--help` text.
pub fn help_text() -> String {
    let mut out = String::new();
    out.push_str(&format!("api-consumer {}\n\n", env!("CARGO_PKG_VERSION")));
    push_wrapped(
        &mut out,
        "",
        "Creates or deletes groups on every node of a cluster, all-or-nothing: a group ends \
         up present on all nodes or on none. For each group the job reads every node's \
         state, changes only the nodes that differ from the goal, retries transient \
         failures with backoff, resolves ambiguous answers by reading the node back, and \
         rolls back exactly the nodes it changed when the group cannot reach its goal. \
         Groups that cannot be made consistent are named in the logs and the run report. \
         It also verifies (read-only: which groups are on some nodes only), plans without \
         writing (DRY_RUN), and reconciles the nodes to a desired set of groups, deleting \
         the others only when asked (PRUNE, bounded by PRUNE_MAX). \
         Logs go to stdout; the last line is the run summary.",
    );
    out.push_str("\nUSAGE:\n    api-consumer [--help | --version]\n\n");
    push_wrapped(
        &mut out,
        "",
        "Without arguments the job runs. It takes no other arguments: it is configured \
         only through the environment variables below. For local runs a .env file in the \
         current directory is read too (variables already set in the environment win). \
         Values are trimmed; a variable that is set but empty is an error (unset it to \
         get the default).",
    );
    out.push_str("\nENVIRONMENT:\n");
    for doc in VARIABLES {
        let range = match doc.range() {
            Some((min, max)) => format!("; {min} to {max}"),
            None => String::new(),
        };
        out.push_str(&format!("    {}  ({}{range})\n", doc.name, doc.default));
        push_wrapped(&mut out, "        ", doc.description);
    }
    out.push_str(
        "\nEXIT CODES:\n\
         \x20   0  every group is at its goal on every node (already being there counts);\n\
         \x20      verify: every group is on every node or on none; dry run: no change\n\
         \x20   1  at least one group was rolled back cleanly, or not attempted because of\n\
         \x20      the run deadline, a signal, MAX_FAILED_GROUPS or a node down past\n\
         \x20      NODE_DOWN_WAIT_SECS, or could not be read (verify, dry run); or a node's\n\
         \x20      list could not be had, or a reconcile refused to prune; no group is\n\
         \x20      inconsistent\n\
         \x20   2  configuration or input error; no request was sent\n\
         \x20   3  at least one group is inconsistent (on some nodes only); see the logs\n\
         \x20      and the run report for the group, node and state\n\
         \x20   4  a dry run found changes to make (and no problem above)\n\
         \x20  70  the process could not start (its async runtime); no request was sent\n",
    );
    out
}

/// Appends `text` wrapped at 80 columns, every line prefixed by `indent`.
fn push_wrapped(out: &mut String, indent: &str, text: &str) {
    const WIDTH: usize = 80;
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
}
