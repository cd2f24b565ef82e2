//! `licet-node ui`: the address of the daemon's web dashboard, with the API token in its
//! fragment, printed and, with `--open`, opened by the desktop's `xdg-open`.
//!
//! Invariant: the address is printed only once the daemon answered with the token read, so a
//! printed address works; the opener is waited for at most [`OPENER_LIMIT`].

use std::{path::Path, process::Stdio, time::Duration};

use anyhow::anyhow;

use super::{Failure, Verdict, call_failure, connect, output::print_json};

/// The program that opens an address in the desktop's browser.
const OPENER: &str = "xdg-open";
/// How long `--open` waits for the opener to hand the address over.
const OPENER_LIMIT: Duration = Duration::from_secs(20);
/// How often `--open` looks whether the opener has finished.
const OPENER_POLL: Duration = Duration::from_millis(50);

/// `ui [--open]`.
pub(super) async fn show(data_dir: &Path, open: bool, json: bool) -> Result<(), Failure> {
    let client = connect(data_dir)?;
    client
        .status()
        .await
        .map_err(|e| call_failure(e, &client, Verdict::UsageError))?;
    let url = client.dashboard_url();
    if json {
        print_json(&serde_json::json!({ "url": url }))?;
    } else {
        println!("{url}");
    }
    if open {
        open_in_browser(&url).await?;
    }
    Ok(())
}

async fn open_in_browser(url: &str) -> Result<(), Failure> {
    let mut opener = std::process::Command::new(OPENER)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            Failure::other(anyhow::Error::new(e).context(format!(
                "cannot run {OPENER} to open the dashboard; open the address above in a browser"
            )))
        })?;
    let deadline = tokio::time::Instant::now() + OPENER_LIMIT;
    loop {
        match opener.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(Failure::other(anyhow!(
                    "{OPENER} failed ({status}); open the address above in a browser"
                )));
            }
            Ok(None) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(OPENER_POLL).await;
            }
            // Still handing over (some openers stay until the browser exits): leave it to it.
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Failure::other(anyhow::Error::new(e).context(format!(
                    "cannot wait for {OPENER}; open the address above in a browser"
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;

    #[tokio::test]
    async fn the_address_carries_the_token_only_when_the_daemon_answers() {
        let (dir, server) = daemon_dir().await;
        let url = client_of(&dir).dashboard_url();
        assert_eq!(
            url,
            format!("http://{}/ui/#token={}", server.addr, server.token)
        );
        exec(&["ui"], dir.path()).await.unwrap();
        exec(&["ui", "--json"], dir.path()).await.unwrap();
        assert_eq!(server.node.calls().len(), 2, "each run asks the daemon");

        server.node.fail(ApiError::new(
            ApiErrorKind::Internal,
            "the database is closed",
        ));
        let (code, message) = fails(&["ui"], dir.path()).await;
        assert_eq!(code, 2);
        assert!(message.contains("the database is closed"), "{message}");
    }
}
