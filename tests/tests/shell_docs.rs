//! `completions` and `man` of both tools, as a user installs them: the bash script parses and,
//! sourced into bash, completes a subcommand name; the zsh and fish scripts name every
//! subcommand; `man --out DIR` writes one page per command and subcommand, each renders with no
//! groff warning and names its command's options. Rendering needs `groff` (Debian's
//! `groff-base`; `.ci/run` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use licet_tests::{bin, required};

/// Runs `program args…` and returns its output, which must be a success.
#[track_caller]
fn ok(program: &Path, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env_remove("LICET_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The names under `Commands:` in a `--help` text (not `help`).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path of `program` (the top one, empty, first) with its `--help` text.
fn command_tree(program: &Path) -> Vec<(Vec<String>, String)> {
    fn walk(program: &Path, path: Vec<String>, found: &mut Vec<(Vec<String>, String)>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&ok(program, &args));
        let subs = listed_subcommands(&help);
        found.push((path.clone(), help));
        for sub in subs {
            let mut deeper = path.clone();
            deeper.push(sub);
            walk(program, deeper, found);
        }
    }
    let mut found = Vec::new();
    walk(program, Vec::new(), &mut found);
    found
}

/// The long options (`--name`) that a `--help` text lists.
fn long_options(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            line.split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(str::to_owned)
        })
        .collect()
}

/// What the completion function of `script` offers for the command line `words` (the last
/// word being completed), as bash-completion calls it.
fn bash_completes(script: &Path, program: &str, words: &[&str]) -> Vec<String> {
    let words_list: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let last = words.len() - 1;
    let probe = format!(
        "set -e\nsource '{script}'\n\
         function=$(complete -p {program} | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         COMP_WORDS=({words})\nCOMP_CWORD={last}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         \"$function\" {program} '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = words_list.join(" "),
        current = words[last],
        previous = words[last.saturating_sub(1)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the completion function failed for {words:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks the completion scripts of `program`: `partial` (the start of a subcommand name)
/// completes to exactly `expected` in bash, and `group`'s subcommands are offered after it.
fn check_completions(program: &str, partial: &str, expected: &str, group: &str) {
    let exe = bin(program);
    let tree = command_tree(&exe);
    let top_level: Vec<&str> = tree
        .iter()
        .filter(|(path, _)| path.len() == 1)
        .map(|(path, _)| path[0].as_str())
        .collect();
    assert!(top_level.contains(&expected), "{top_level:?}");
    let members: Vec<String> = tree
        .iter()
        .filter(|(path, _)| path.len() == 2 && path[0] == group)
        .map(|(path, _)| path[1].clone())
        .collect();
    assert!(!members.is_empty(), "{program} {group} has no subcommands");

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join(format!("{program}.bash"));
    std::fs::write(&script, ok(&exe, &["completions", "bash"]).stdout).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "`bash -n` rejects the bash script: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    assert_eq!(
        bash_completes(&script, program, &[program, partial]),
        [expected],
        "`{program} {partial}<TAB>` in bash"
    );
    let offered = bash_completes(&script, program, &[program, group, ""]);
    for member in &members {
        assert!(
            offered.contains(member),
            "`{program} {group} <TAB>` offers {offered:?}, not {member:?}"
        );
    }
    // Two levels down, a subcommand's own options.
    for (path, help) in tree.iter().filter(|(path, _)| path.len() == 2) {
        let mut words: Vec<&str> = vec![program];
        words.extend(path.iter().map(String::as_str));
        words.push("--");
        let offered = bash_completes(&script, program, &words);
        for option in long_options(help) {
            assert!(
                offered.contains(&option),
                "`{}<TAB>` offers {offered:?}, not {option:?}",
                words.join(" ")
            );
        }
    }

    for shell in ["zsh", "fish"] {
        let script = stdout(&ok(&exe, &["completions", shell]));
        assert!(!script.trim().is_empty(), "the {shell} script is empty");
        for name in top_level
            .iter()
            .copied()
            .chain(members.iter().map(String::as_str))
        {
            assert!(
                script.contains(name),
                "the {shell} script does not name the subcommand {name:?}"
            );
        }
    }
}

#[test]
fn licet_node_completions_complete_its_subcommands() {
    check_completions("licet-node", "tr", "trust", "trust");
}

#[test]
fn licet_manifest_completions_complete_its_subcommands() {
    check_completions("licet-manifest", "ca", "catalog", "catalog");
}

/// `program man --out DIR` writes one page per command path, named after it, prints each path,
/// and each page renders with no warning and names every long option of its command.
fn check_man_pages(program: &str, expected_pages: &[&str]) {
    let exe = bin(program);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man/man1");
    let printed = stdout(&ok(&exe, &["man", "--out", out_dir.to_str().unwrap()]));

    let tree = command_tree(&exe);
    let mut expected: Vec<String> = tree
        .iter()
        .map(|(path, _)| {
            let mut name = vec![program.to_owned()];
            name.extend(path.iter().cloned());
            format!("{}.1", name.join("-"))
        })
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, expected, "the pages in {}", out_dir.display());
    for page in expected_pages {
        assert!(
            written.iter().any(|w| w == page),
            "no {page} in {written:?}"
        );
    }
    let mut printed: Vec<String> = printed.lines().map(str::to_owned).collect();
    printed.sort();
    let mut written_paths: Vec<String> = written
        .iter()
        .map(|name| out_dir.join(name).display().to_string())
        .collect();
    written_paths.sort();
    assert_eq!(
        printed, written_paths,
        "`man --out` prints the pages it wrote"
    );

    if !required::command_runs("groff", &["--version"]) {
        required::cannot_run_here("groff is not installed (Debian package groff-base)");
        return;
    }
    for (path, help) in &tree {
        let mut name = vec![program.to_owned()];
        name.extend(path.iter().cloned());
        let page = out_dir.join(format!("{}.1", name.join("-")));
        let check = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&page)
            .output()
            .unwrap();
        assert!(
            check.status.success() && check.stderr.is_empty(),
            "groff warns about {}:\n{}",
            page.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let rendered = Command::new("groff")
            .args(["-man", "-Tutf8", "-P-cbou", "-rLL=200n"])
            .arg(&page)
            .env("MANWIDTH", "200")
            .output()
            .unwrap();
        assert!(rendered.status.success());
        let text = String::from_utf8_lossy(&rendered.stdout);
        let options = long_options(help);
        assert!(
            options.iter().any(|o| o == "--help"),
            "no options found in the help of {name:?}"
        );
        for option in options {
            assert!(
                text.contains(&option),
                "{} does not name {option}:\n{text}",
                page.display()
            );
        }
        assert!(
            text.contains(&name.join("-")),
            "{} does not name its command",
            page.display()
        );
    }
}

#[test]
fn licet_node_man_pages_cover_every_command_and_render_cleanly() {
    check_man_pages(
        "licet-node",
        &[
            "licet-node.1",
            "licet-node-run.1",
            "licet-node-trust-add.1",
            "licet-node-get.1",
            "licet-node-man.1",
        ],
    );
}

#[test]
fn licet_manifest_man_pages_cover_every_command_and_render_cleanly() {
    check_man_pages(
        "licet-manifest",
        &[
            "licet-manifest.1",
            "licet-manifest-create.1",
            "licet-manifest-catalog-revoke-delegate.1",
        ],
    );
}

/// `man --out` into a directory that cannot be made says which and why, exit 2, for both.
#[test]
fn man_into_a_directory_that_cannot_be_made_names_it_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let out_dir = file.join("man1");
    for program in ["licet-node", "licet-manifest"] {
        let out = Command::new(bin(program))
            .args(["man", "--out", out_dir.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.starts_with(&format!("{program}: error: cannot create the directory"))
                && stderr.contains(&out_dir.display().to_string()),
            "{stderr}"
        );
    }
}
