//! A Send belongs to its Join: only the member token of a name's live Join of a room lets a
//! client speak as that name there; a stale one (from a Join that ended) is refused too. And one
//! caller may create only so many new rooms a minute.

use std::time::Duration;

use tonic::Code;

use crate::support::{
    chat::*,
    status::{expect_code, retry_delay},
};

#[tokio::test]
async fn nobody_posts_as_a_member_without_the_token_of_their_live_join() {
    let (_dir, server, rpc) = chat(&[]).await;
    let (ada, first_token) = join_with_token(&rpc, "tokens", "ada", 0).await.unwrap();
    let mallory = connect(&server).await;
    let (_mallory, mallory_token) = join_with_token(&mallory, "tokens", "mallory", 0)
        .await
        .unwrap();
    for stolen in ["not-a-token", mallory_token.as_str()] {
        expect_code(
            send_with_token(&mallory, "tokens", "ada", stolen, "it is me, ada", "").await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        send_with_token(&mallory, "tokens", "ADA", "", "it is me, ada", "").await,
        Code::InvalidArgument,
    );
    send_with_token(&rpc, "tokens", "ada", &first_token, "really me", "")
        .await
        .expect("ada speaks with her own token");

    // Her Join ends and she joins again: the old token is dead, the new one works.
    drop(ada);
    wait_for_event(&rpc, "tokens", "ada left (left)").await;
    let (_ada, second_token) = join_when_free_with_token(&rpc, "tokens", "ada").await;
    assert_ne!(first_token, second_token);
    expect_code(
        send_with_token(&mallory, "tokens", "ada", &first_token, "old token", "").await,
        Code::PermissionDenied,
    );
    send_with_token(&rpc, "tokens", "ada", &second_token, "back again", "")
        .await
        .expect("the new Join's token");
    assert_eq!(
        story(&rpc, "tokens").await,
        [
            "ada joined",
            "mallory joined",
            "ada: really me",
            "ada left (left)",
            "ada joined",
            "ada: back again"
        ]
    );
}

#[tokio::test]
async fn one_caller_may_create_only_so_many_new_rooms_a_minute_and_join_old_ones_freely() {
    let (_dir, _server, rpc) = chat(&["--max-new-rooms-per-minute", "3"]).await;
    let mut members = Vec::new();
    for room in ["r1", "r2", "r3"] {
        members.push(joined(&rpc, room, "ada", 0).await);
    }
    let refused = expect_code(
        join(&rpc, "r4", "ada", 0).await.map(|_| ()),
        Code::ResourceExhausted,
    );
    let wait = retry_delay(&refused);
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    members.push(joined(&rpc, "r1", "bob", 0).await);
    assert!(
        !rooms(&rpc).await.iter().any(|room| room.name == "r4"),
        "the refused room was not made"
    );
}
