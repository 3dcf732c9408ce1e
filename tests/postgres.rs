//! The PostgreSQL the store's PostgreSQL engine will stand on (issue 33),
//! started by the test itself: a primary with a synchronous standby.
//! What the engine relies on is checked here first: a commit the primary
//! acknowledged with `synchronous_commit = on` is on the standby when the
//! primary's machine dies; the promoted standby takes writes; a
//! connection string naming both hosts with `target_session_attrs =
//! read-write` finds whichever is the primary; and `bytea` keys order
//! byte by byte, shorter first, as the store's contract wants.

mod common;

use common::postgres::{Pair, available};
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_commit_survives_the_primary_and_the_node_follows_the_promotion() {
    if !available() {
        return;
    }
    let pair = tokio::task::spawn_blocking(Pair::start).await.unwrap();
    let both = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres \
         target_session_attrs=read-write connect_timeout=5",
        pair.primary.port, pair.standby.port
    );
    let primary = connect(&both).await.unwrap();
    primary
        .batch_execute(
            "SET synchronous_commit = on;
             CREATE TABLE entries (key bytea PRIMARY KEY, value bytea NOT NULL);",
        )
        .await
        .unwrap();
    let keys: [&[u8]; 8] = [
        b"\xff",
        b"\x00",
        b"a\xff",
        b"ab",
        b"\x00\x00",
        b"a",
        b"\x80",
        b"a\x00",
    ];
    for key in keys {
        primary
            .execute(
                "INSERT INTO entries VALUES ($1, $2)",
                &[&key, &b"v".as_slice()],
            )
            .await
            .unwrap();
    }
    let ordered: Vec<Vec<u8>> = primary
        .query("SELECT key FROM entries ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
    expected.sort();
    assert_eq!(ordered, expected, "bytea orders as Rust orders byte slices");

    let pair = tokio::task::spawn_blocking(move || {
        pair.kill_primary();
        pair
    })
    .await
    .unwrap();
    assert!(
        connect(&both).await.is_err(),
        "no read-write server while the standby is a standby"
    );
    let pair = tokio::task::spawn_blocking(move || {
        pair.promote_standby();
        pair
    })
    .await
    .unwrap();
    let promoted = connect(&both).await.unwrap();
    let held: i64 = promoted
        .query_one("SELECT count(*) FROM entries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        held,
        keys.len() as i64,
        "every acknowledged commit survived"
    );
    promoted
        .execute(
            "INSERT INTO entries VALUES ($1, $2)",
            &[&b"after".as_slice(), &b"v".as_slice()],
        )
        .await
        .unwrap();
    drop(pair);
}
