//! A full disk, for the bank, the chat, the phone book and the doctor: every write is refused
//! with RESOURCE_EXHAUSTED and a RetryInfo, nothing acknowledged is lost (nor anything refused
//! applied), and writes pass again once there is room, with no restart. The "disk" is the
//! database's page limit, set through the servers' hidden test flag (`support::disk`): mounting a
//! small filesystem needs privileges CI may not have.

use std::time::Duration;

use crate::support::{
    bank::{
        TestBank, assert_adds_up, balance, bank_server, client, deposit, ledger, request_id,
        transfer,
    },
    chat::{
        chat, chat_server, connect, join_with_token, read_through, send_with_token, seq_what,
        transcript,
    },
    disk::{Disk, MOST_WRITES, assert_storage_full, until_refused},
    doctor::{self, doctor, history, visit},
    phonebook::{
        self, add, batch, batch_added, list_from, phonebook_server, rejected, request, us,
    },
    process::stop,
};

const CALL_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_full_disk_refuses_bank_writes_clearly_loses_nothing_acknowledged_and_passes_once_there_is_room()
 {
    let disk = Disk::with_room();
    let bank = TestBank::start_with(&disk.flag()).await;
    let (ada, session) = bank.customer("ada", "2468", 100_000).await;
    let (bob, _) = bank.customer("bob", "1357", 0).await;
    let rpc = &bank.rpc;

    disk.fill();
    let deposit_ids: Vec<String> = (0..MOST_WRITES).map(|_| request_id()).collect();
    let (deposited, refused) =
        until_refused(async |i| deposit(rpc, &session, &ada, 1, &deposit_ids[i]).await).await;
    assert_storage_full(&refused, "bank");
    let refused_deposit = &deposit_ids[deposited as usize];
    // The transfers' group commit writes on a connection of its own: the same answer.
    let transfer_ids: Vec<String> = (0..MOST_WRITES).map(|_| request_id()).collect();
    let (transferred, refused) =
        until_refused(async |i| transfer(rpc, &session, &ada, &bob, 1, &transfer_ids[i]).await)
            .await;
    assert_storage_full(&refused, "bank");
    let refused_transfer = &transfer_ids[transferred as usize];
    assert_eq!(
        balance(rpc, &session, &ada).await.unwrap(),
        100_000 + deposited - transferred,
        "a full disk still shows every balance, with exactly what was acknowledged"
    );

    disk.make_room();
    deposit(rpc, &session, &ada, 1, refused_deposit)
        .await
        .expect("the refused deposit, retried once there is room");
    transfer(rpc, &session, &ada, &bob, 1, refused_transfer)
        .await
        .expect("the refused transfer, retried once there is room");
    let ada_cents = 100_000 + deposited + 1 - transferred - 1;
    let bob_cents = transferred + 1;
    assert_eq!(balance(rpc, &session, &ada).await.unwrap(), ada_cents);
    let rows = ledger(rpc, &session, &ada).await.unwrap();
    assert_adds_up(&rows, ada_cents);
    assert_eq!(
        rows.len() as i64,
        1 + deposited + 1 + transferred + 1,
        "one row per acknowledged movement, none for a refused one"
    );

    // Everything acknowledged is on the disk: a kill -9 and a restart keep it.
    let lock_addr = bank.lock.addr.to_string();
    let data_dir = bank.data_dir().to_owned();
    stop(bank.server, libc::SIGKILL).await;
    let restarted = bank_server(&data_dir, &lock_addr, None, &[]).await;
    let rpc = client(&restarted.addr.to_string(), CALL_LIMIT);
    assert_eq!(balance(&rpc, &session, &ada).await.unwrap(), ada_cents);
    let bob_session = crate::support::bank::login(&rpc, "bob", "1357")
        .await
        .unwrap()
        .session_token;
    assert_eq!(balance(&rpc, &bob_session, &bob).await.unwrap(), bob_cents);
}

#[tokio::test]
async fn a_full_disk_refuses_chat_writes_clearly_loses_no_acknowledged_message_and_passes_once_there_is_room()
 {
    let disk = Disk::with_room();
    let (dir, server, rpc) = chat(&disk.flag()).await;
    let (mut events, token) = join_with_token(&rpc, "attic", "a", 0).await.unwrap();
    let long = |i: usize| format!("{i:04} {}", "x".repeat(1_000));

    disk.fill();
    let (long_sent, refused) = until_refused(async |i| {
        send_with_token(&rpc, "attic", "a", &token, &long(i), &format!("m{i}")).await
    })
    .await;
    assert_storage_full(&refused, "chat");
    // The last corners, with the smallest message there is.
    let (short_sent, refused) =
        until_refused(async |_| send_with_token(&rpc, "attic", "a", &token, "x", "").await).await;
    assert_storage_full(&refused, "chat");
    // Its Joined would be larger than that message.
    let joining = join_with_token(&rpc, "attic", "bartholomew", 0).await;
    let Err(refused) = joining else {
        panic!("a Join is refused while nothing can be stored");
    };
    assert_storage_full(&refused, "chat");

    disk.make_room();
    let n = long_sent as usize;
    let retried = send_with_token(&rpc, "attic", "a", &token, &long(n), &format!("m{n}"))
        .await
        .expect("the refused message, sent again once there is room");
    let last = 1 + long_sent + short_sent + 1;
    assert_eq!(retried, last as u64, "the next seq: no gap");

    let mut expected = vec!["a joined".to_owned()];
    expected.extend((0..n).map(|i| format!("a: {}", long(i))));
    expected.extend((0..short_sent).map(|_| "a: x".to_owned()));
    expected.push(format!("a: {}", long(n)));
    let expected: Vec<(u64, String)> = (1..).zip(expected).collect();
    assert_eq!(
        seq_what(&read_through(&mut events, retried).await),
        expected,
        "the member heard every stored message once, in order, and no refused one"
    );
    assert_eq!(seq_what(&transcript(&rpc, "attic").await.events), expected);

    // Everything acknowledged is on the disk: a kill -9 and a restart keep it.
    stop(server, libc::SIGKILL).await;
    let restarted = chat_server(dir.path(), &[]).await;
    let rpc = connect(&restarted).await;
    assert_eq!(seq_what(&transcript(&rpc, "attic").await.events), expected);
}

#[tokio::test]
async fn a_full_disk_refuses_phone_book_writes_clearly_and_takes_them_once_there_is_room() {
    let disk = Disk::with_room();
    let dir = tempfile::tempdir().unwrap();
    let server = phonebook_server(dir.path(), None, &disk.flag()).await;
    let rpc = phonebook::client(&server).await;
    let name = |i: usize| format!("Person {i:04} {}", "x".repeat(100));

    disk.fill();
    let (added, refused) =
        until_refused(async |i| add(&rpc, &name(i), &us(i as u32), "").await).await;
    assert_storage_full(&refused, "phone book");
    // Each larger than the entry just refused.
    let late_name = |i: u32| format!("Late {i} {}", "x".repeat(190));
    let late: Vec<_> = (0..3)
        .map(|i| request(&late_name(i), &us(9_000 + i), ""))
        .collect();
    for outcome in batch(&rpc, late.clone()).await.unwrap() {
        let rejection = rejected(&outcome);
        assert_eq!(rejection.code, "RESOURCE_EXHAUSTED", "{rejection:?}");
        assert!(
            rejection.message.contains("storage is full"),
            "{rejection:?}"
        );
    }

    disk.make_room();
    let n = added as usize;
    add(&rpc, &name(n), &us(n as u32), "")
        .await
        .expect("the refused entry, added again once there is room");
    batch_added(&rpc, late).await;
    let mut names: Vec<String> = list_from(&rpc, 1000, "")
        .await
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..=n).map(name).collect();
    expected.extend((0..3).map(late_name));
    expected.sort();
    assert_eq!(names, expected, "every acknowledged entry, once");
}

#[tokio::test]
async fn a_full_disk_refuses_doctor_exchanges_clearly_and_the_session_goes_on_once_there_is_room() {
    let disk = Disk::with_room();
    let (_dir, _server, rpc) = doctor(&disk.flag()).await;
    let name = doctor::patient("disk");
    let session = visit(&rpc, &name).await;
    let line = |i: usize| format!("line {i:04} my mother {}", "and my father ".repeat(20));

    disk.fill();
    let (said, refused) =
        until_refused(async |i| doctor::reply(&rpc, &session.session_id, &line(i)).await).await;
    assert_storage_full(&refused, "doctor");

    disk.make_room();
    let n = said as usize;
    doctor::reply(&rpc, &session.session_id, &line(n))
        .await
        .expect("the refused line, said again once there is room: the session goes on");
    let recorded: Vec<String> = history(&rpc, &name)
        .await
        .into_iter()
        .map(|exchange| exchange.patient_text)
        .filter(|text| text.starts_with("line "))
        .collect();
    assert_eq!(
        recorded,
        (0..=n).map(line).collect::<Vec<_>>(),
        "every answered exchange, once, in order"
    );
}
