//! Shell completion scripts and man pages, generated from a binary's own clap command tree, so
//! they always name the subcommands and options that binary has. `licet-node` and
//! `licet-manifest` both use this one file (the manifest tool includes it by path), so their
//! `completions` and `man` subcommands behave alike.
//!
//! Invariants:
//! - Both are local: nothing here reads a data directory or talks to a daemon.
//! - `man --out DIR` writes one page per command and subcommand, at every level
//!   (`licet-node.1`, `licet-node-trust.1`, `licet-node-trust-add.1`, …), leaving out clap's
//!   `help` subcommand and hidden ones; each page is written to a temporary file in DIR and
//!   renamed into place, so a page is never seen half-written.
//! - A page is ASCII: other characters are groff escapes (`\[u2026]`), so `groff -man` renders
//!   it without warnings under any locale.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// A shell that `completions` writes a script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU Bash (with the bash-completion package).
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// The arguments of a `completions` subcommand.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The arguments of a `man` subcommand.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory to write the pages in (created if missing); existing pages of the same
    /// names are replaced.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Writes the completion script of `command` (the binary's whole command tree) for `shell` to
/// `out`.
pub fn write_completions(
    mut command: clap::Command,
    shell: Shell,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let name = command.get_name().to_owned();
    let script = match shell {
        Shell::Bash => bash_script(&mut command, &name)?,
        Shell::Zsh => generated_script(clap_complete::Shell::Zsh, &mut command, &name),
        Shell::Fish => generated_script(clap_complete::Shell::Fish, &mut command, &name),
    };
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script")
}

/// The script clap_complete writes for `shell` and the program `name`.
fn generated_script(
    shell: clap_complete::Shell,
    command: &mut clap::Command,
    name: &str,
) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, name, &mut script);
    script
}

/// The bash script for the program `name`. clap_complete's bash generator spells the state of
/// a subcommand two ways when the program's name has a `-` (clap issue 6421: `licet-node trust
/// <TAB>` then offers nothing), so the script is generated for the name with `_` instead, and
/// only its `complete` lines, which name the command to complete, are given the real name.
fn bash_script(command: &mut clap::Command, name: &str) -> anyhow::Result<Vec<u8>> {
    let spelled = name.replace('-', "_");
    let script = String::from_utf8(generated_script(
        clap_complete::Shell::Bash,
        command,
        &spelled,
    ))
    .context("the bash completion script is not UTF-8")?;
    let mut renamed = String::with_capacity(script.len());
    let mut completes = 0;
    for line in script.split_inclusive('\n') {
        if line.trim_start().starts_with("complete -F ") {
            let Some(head) = line.trim_end().strip_suffix(&format!(" {spelled}")) else {
                anyhow::bail!("unexpected `complete` line in the bash script: {line:?}");
            };
            renamed.push_str(&format!("{head} {name}\n"));
            completes += 1;
        } else {
            renamed.push_str(line);
        }
    }
    anyhow::ensure!(
        completes > 0,
        "the bash completion script has no `complete` line for {name}"
    );
    Ok(renamed.into_bytes())
}

/// Writes the man pages of `command` (the binary's whole command tree) into `dir`, creating it
/// if missing; returns the paths written, the top command's page first.
pub fn write_man_pages(command: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let mut command = command.disable_help_subcommand(true);
    // Gives every subcommand its display name (`licet-node-trust-add`), which names its page.
    command.build();
    let mut written = Vec::new();
    write_pages(&command, dir, &mut written)?;
    Ok(written)
}

/// Writes the page of `command`, then those of its subcommands, depth first.
fn write_pages(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("cannot render the man page {}", path.display()))?;
    let page = String::from_utf8(page)
        .with_context(|| format!("the man page {} is not UTF-8", path.display()))?;
    write_atomically(&path, roff_ascii(&page).as_bytes())?;
    written.push(path);
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// `page` with each character beyond ASCII (the `…` of the help texts) written as groff's
/// `\[uXXXX]` escape, so the page renders the same under every locale and troff without an
/// input-encoding step.
fn roff_ascii(page: &str) -> String {
    let mut ascii = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    ascii
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed into place; the page is
/// readable by everyone (0644), as man pages are.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
    };
    let mut file = tempfile::Builder::new()
        .prefix(".man-")
        .tempfile_in(dir)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(fail)?;
    }
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
