//! Reading the example commands of a `--help` text, for the CLI contract tests of both tools
//! (`manifest-tool/tests/cli_contract.rs` and `node/tests/cli_contract.rs` include this file):
//! each example must parse and fit 80 columns.

/// The example commands of a `--help` text for `program`: the indented lines after
/// `Example:`/`Examples:` up to the first blank line, continuation lines (`\`) joined, each
/// with the line widths it has in the help.
pub fn examples(help: &str, program: &str) -> Vec<(String, Vec<usize>)> {
    let Some((_, after)) = help
        .split_once("\nExamples:\n")
        .or_else(|| help.split_once("\nExample:\n"))
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut current = (String::new(), Vec::new());
    for line in after.lines().take_while(|line| !line.trim().is_empty()) {
        current.1.push(line.chars().count());
        match line.trim().strip_suffix('\\') {
            Some(head) => current.0.push_str(head),
            None => {
                current.0.push_str(line.trim());
                found.push(std::mem::take(&mut current));
            }
        }
    }
    found
        .into_iter()
        .filter(|(command, _)| command.starts_with(&format!("{program} ")))
        .collect()
}

/// `command` as a shell splits it (words, double and single quotes), without a trailing
/// comment, pipe, output redirection or `&`.
pub fn shell_words(command: &str) -> Vec<String> {
    let command = command.split(" # ").next().unwrap();
    let command = command.split(" | ").next().unwrap();
    let command = command.split(" > ").next().unwrap().trim_end_matches('&');
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Checks every example of `texts` (help texts of `program`): it must fit 80 columns, and
/// `run(words after the program name)` with `--help` appended must succeed. Returns the
/// problems found and how many examples were checked.
pub fn check_examples(
    texts: &[String],
    program: &str,
    run: impl Fn(&[String]) -> std::process::Output,
) -> (Vec<String>, usize) {
    let mut checked = 0;
    let mut problems = Vec::new();
    for text in texts {
        for (command, widths) in examples(text, program) {
            if widths.iter().any(|w| *w > 80) {
                problems.push(format!("wider than 80 columns, so it wraps: {command}"));
            }
            let words = shell_words(&command);
            let out = run(&words[1..]);
            if !out.status.success() {
                problems.push(format!(
                    "does not parse: {command}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            checked += 1;
        }
    }
    (problems, checked)
}
