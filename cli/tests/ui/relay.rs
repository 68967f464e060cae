//! Mail held by a relay, as the app shows it.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_held_by_a_relay_shows_one_tick_and_who_holds_it() {
    let Some(chrome) = chrome() else {
        skip_loudly("mail_held_by_a_relay_shows_one_tick_and_who_holds_it");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = start_relay(&tmp.path().join("relay"));
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob_dir = tmp.path().join("bob");
    ok_stdout(meshchat(&bob_dir).args(["init", "--name", "Bob"]));
    let bob = Daemon::run(&bob_dir, &["--relay", &relay_addr]);
    // Bob's invite carries his relay and a delivery token for it.
    add_contact(&alice, &bob);
    add_contact(&bob, &alice);
    bob.stop();

    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    wait_js(
        &a,
        "document.querySelector('.chat-item')",
        "the chat with Bob",
    )
    .await;
    open_first_chat(&a).await;
    type_and_enter(&a, "Held for you").await;
    // Bob is offline: the relay takes custody, one tick, and says until when.
    wait_js(&a, "document.querySelector('.msg.out .tick') && document.querySelector('.msg.out .tick').dataset.state === 'sent'", "✓ (at a relay)").await;
    assert_eq!(
        js(&a, "document.querySelector('.msg.out .tick').textContent").await,
        "✓"
    );
    js(&a, "document.querySelector('.msg.out .tick').dispatchEvent(new MouseEvent('mouseenter')); true").await;
    let title = wait_js(&a, "document.querySelector('.msg.out .tick').title.includes('held by') && document.querySelector('.msg.out .tick').title", "who holds it").await;
    assert!(
        title.as_str().unwrap().contains("held by 1 relay until"),
        "{title}"
    );
    screenshot(&a, "held-by-relay").await;

    // Alice goes offline too; Bob comes back and finds the message at the relay.
    let _ = browser.close().await;
    let _ = browser.wait().await;
    alice.stop();
    let bob = Daemon::run(&bob_dir, &["--relay", &relay_addr]);
    // Re-read the history whenever Bob's node reports something (and at
    // least every second, for what came before `watch` started).
    let mut watch = meshchat(&bob.dir)
        .args(["watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, events) = sync_channel(1024);
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let history = ok_stdout(meshchat(&bob.dir).args(["history", "Alice"]));
        if history.contains("Held for you") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the message did not come from the relay: {history}"
        );
        let _ = events.recv_timeout(Duration::from_secs(1));
    }
    let _ = watch.kill();
    let _ = watch.wait();
}
