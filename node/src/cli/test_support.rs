//! What the client subcommands' tests share: a data directory whose daemon is a fake
//! `NodeApi` on loopback, and running a command line against it.

use std::{path::Path, sync::Arc, time::Duration};

pub(super) use clap::Parser;
pub(super) use licet_proto::policy::RefusalReason;

pub(super) use super::execute;
use super::{ClientCommand, Failure, content::Watch};
pub(super) use crate::{
    api::{
        client::ApiClient,
        server::{
            create_token,
            fake::{Call, FakeNode, TestServer, content, within},
            write_api_addr,
        },
    },
    contract::{ApiError, ApiErrorKind, Refusal},
};

#[derive(Parser)]
#[command(name = "licet-node")]
pub(super) struct TestCli {
    #[command(subcommand)]
    pub(super) command: ClientCommand,
}

pub(super) fn quick_watch() -> Watch {
    Watch {
        poll_interval: Duration::from_millis(20),
        stall_limit: Duration::from_secs(10),
        progress: false,
    }
}

/// A data directory whose daemon is a fake `NodeApi` on loopback.
pub(super) async fn daemon_dir() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path()).unwrap();
    let server = TestServer::start(Arc::new(FakeNode::default()), token).await;
    write_api_addr(dir.path(), server.addr).unwrap();
    (dir, server)
}

pub(super) async fn exec(args: &[&str], dir: &Path) -> Result<(), Failure> {
    exec_with(args, dir, &quick_watch()).await
}

pub(super) async fn exec_with(args: &[&str], dir: &Path, watch: &Watch) -> Result<(), Failure> {
    let cli =
        TestCli::try_parse_from(std::iter::once("licet-node").chain(args.iter().copied())).unwrap();
    within(execute(cli.command, dir, watch)).await
}

pub(super) fn message(failure: &Failure) -> String {
    format!("{:#}", failure.error())
}

/// Runs a client command that must fail: its exit code and its message.
pub(super) async fn fails(args: &[&str], dir: &Path) -> (u8, String) {
    let failure = exec(args, dir).await.unwrap_err();
    (failure.exit_code(), message(&failure))
}

pub(super) fn refusal() -> Refusal {
    Refusal {
        reason: RefusalReason::UntrustedPublisher,
        detail: "publisher 3b6a… is not in this node's trust store".to_owned(),
    }
}

pub(super) fn client_of(dir: &tempfile::TempDir) -> ApiClient {
    ApiClient::connect(dir.path()).unwrap()
}

/// A signed envelope of `kind` (not a valid body): what the client reads and passes on, for
/// the daemon to verify.
pub(super) fn signed_file_bytes(kind: licet_proto::signed::SignedKind, body: &[u8]) -> Vec<u8> {
    let key = licet_proto::SecretKey::from_seed(&[9; 32]);
    licet_proto::signed::Signed::sign(kind, body.to_vec(), &key, None).encode()
}
