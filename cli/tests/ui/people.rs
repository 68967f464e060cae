//! Groups and strangers through the app.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_in_the_browser_with_a_removal() {
    let Some(chrome) = chrome() else {
        skip_loudly("a_group_of_three_in_the_browser_with_a_removal");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob = Daemon::start(&tmp.path().join("bob"), "Bob");
    let carol = Daemon::start(&tmp.path().join("carol"), "Carol");
    for (x, y) in [
        (&alice, &bob),
        (&alice, &carol),
        (&bob, &alice),
        (&carol, &alice),
    ] {
        add_contact(x, y);
    }
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    let b = open_app(&browser, &bob).await;
    let c = open_app(&browser, &carol).await;

    // Alice creates the group from the "new group" screen.
    click(&a, "#new-group").await;
    wait_js(
        &a,
        "document.querySelectorAll('.panel input[type=checkbox]').length === 2",
        "the contacts to pick",
    )
    .await;
    js(&a, "document.querySelector('.panel input.field').value = 'Climbers'; \
            document.querySelectorAll('.panel input[type=checkbox]').forEach(b => b.checked = true); true").await;
    js(&a, "[...document.querySelectorAll('.panel button.primary')].find(b => b.textContent === 'Create group').click(); true").await;
    wait_js(
        &a,
        "document.querySelector('#conv-name').textContent === '# Climbers'",
        "the group's conversation",
    )
    .await;
    type_and_enter(&a, "Welcome to the group").await;

    // Bob and Carol see it arrive in their lists and open it.
    for page in [&b, &c] {
        wait_js(page, "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '# Climbers')", "the group in the list").await;
        js(page, "[...document.querySelectorAll('.chat-item')].find(i => i.querySelector('.chat-name').textContent === '# Climbers').click(); true").await;
        wait_js(page, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Welcome to the group')", "Alice's message").await;
        assert_eq!(
            js(
                page,
                "document.querySelector('.msg.in .author').textContent"
            )
            .await,
            "Alice"
        );
    }
    type_and_enter(&b, "Hi all").await;
    wait_js(
        &c,
        "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hi all')",
        "Bob's message at Carol's",
    )
    .await;
    screenshot(&a, "group").await;

    // Alice removes Carol from the group's details.
    click(&a, "#conv-info").await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 3",
        "the member list",
    )
    .await;
    screenshot(&a, "group-info").await;
    // She makes Bob an admin and renames the group; Bob sees the new name.
    js(&a, "[...document.querySelectorAll('.member')].find(m => m.textContent.includes('Bob')).querySelector('button').click(); true").await;
    wait_js(&a, "[...document.querySelectorAll('.member')].some(m => m.textContent.includes('Bob') && m.textContent.includes('admin') && m.textContent.includes('Demote'))", "Bob as an admin").await;
    js(&a, "document.querySelector('.panel input.field').value = 'Crag crew'; [...document.querySelectorAll('.panel button')].find(b => b.textContent === 'Rename').click(); true").await;
    wait_js(
        &b,
        "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '# Crag crew')",
        "the new name at Bob's",
    )
    .await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 3",
        "the member list again",
    )
    .await;
    // New members no longer see the history: Bob's daemon has the setting.
    js(&a, "document.querySelector('.check-row input').checked = false; \
            [...document.querySelectorAll('.panel button')].find(b => b.textContent === 'Save setting').click(); true").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let info: Value = serde_json::from_str(
            ok_stdout(meshchat(&bob.dir).args(["group", "info", "Crag crew", "--json"])).trim(),
        )
        .unwrap();
        if info["settings"]["history_for_new_members"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the setting did not reach Bob: {info}"
        );
    }
    wait_js(&a, "document.querySelectorAll('.member').length === 3 && !document.querySelector('.check-row input').checked", "the saved setting").await;
    js(&a, "[...document.querySelectorAll('.member')].find(m => m.textContent.includes('Carol')).querySelector('.remove-member').click(); true").await;
    wait_js(
        &a,
        "document.querySelectorAll('.member').length === 2",
        "Carol gone from the list",
    )
    .await;

    // What Alice writes next reaches Bob, not Carol.
    js(&a, "[...document.querySelectorAll('.chat-item')].find(i => i.querySelector('.chat-name').textContent === '# Crag crew').click(); true").await;
    wait_js(
        &a,
        "!document.querySelector('#conversation').hidden",
        "the conversation",
    )
    .await;
    type_and_enter(&a, "Just us now").await;
    wait_js(&a, "[...document.querySelectorAll('.msg.out .text')].some(t => t.textContent === 'Just us now')", "the message at Alice's").await;
    wait_js(&b, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Just us now')", "the message at Bob's").await;
    // Carol's daemon learnt of her removal; her history has no new message.
    let carol_has = ok_stdout(meshchat(&carol.dir).args(["history", "Crag crew", "--json"]));
    assert!(!carol_has.contains("Just us now"), "{carol_has}");
    assert_eq!(
        js(&c, "[...document.querySelectorAll('.msg .text')].some(t => t.textContent === 'Just us now')").await,
        false
    );

    let _ = browser.close().await;
    let _ = browser.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_a_request_then_a_tilde_name_then_a_contact() {
    let Some(chrome) = chrome() else {
        skip_loudly("a_stranger_is_a_request_then_a_tilde_name_then_a_contact");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dave = Daemon::start(&tmp.path().join("dave"), "Dave");
    let erin = Daemon::start(&tmp.path().join("erin"), "Erin");
    // Erin has Dave's invite; Dave does not know her.
    add_contact(&erin, &dave);
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let d = open_app(&browser, &dave).await;
    ok_stdout(meshchat(&erin.dir).args(["send", "Dave", "Hello, we met at the crag"]));

    // Dave's app tells him, and the request waits in Contacts.
    wait_js(
        &d,
        "(window.__toasts || []).some(t => t.includes('message request'))",
        "the request's notice",
    )
    .await;
    click(&d, "#show-contacts").await;
    wait_js(&d, "document.querySelector('.request')", "the request").await;
    let request = js(&d, "document.querySelector('.request').textContent").await;
    assert!(
        request.as_str().unwrap().contains("wrote 1 message"),
        "{request}"
    );
    assert!(
        request.as_str().unwrap().contains("we met at the crag"),
        "{request}"
    );
    assert_eq!(
        js(&d, "document.querySelectorAll('.chat-item').length").await,
        0,
        "no chat before accepting"
    );
    click(&d, ".accept-request").await;

    // Accepted: the chat shows her by her profile name, marked as not a contact.
    wait_js(
        &d,
        "[...document.querySelectorAll('.chat-name')].some(n => n.textContent === '~Erin')",
        "~Erin in the list",
    )
    .await;
    js(&d, "document.querySelector('.chat-item').click(); true").await;
    wait_js(&d, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hello, we met at the crag')", "her message").await;
    let status = wait_js(&d, "document.querySelector('#conv-status').textContent.startsWith('not in your contacts') && document.querySelector('#conv-status').textContent", "the not-a-contact mark").await;
    assert!(
        status.as_str().unwrap().starts_with("not in your contacts"),
        "{status}"
    );
    screenshot(&d, "stranger").await;
    // Narrower than 800 px: one pane at a time, with a way back.
    d.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(600)
            .height(800)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .expect("metrics"),
    )
    .await
    .expect("viewport");
    wait_js(&d, "getComputedStyle(document.querySelector('.sidebar')).display === 'none' && document.querySelector('#back').offsetParent !== null", "the one-pane layout").await;
    screenshot(&d, "narrow").await;
    click(&d, "#back").await;
    wait_js(&d, "getComputedStyle(document.querySelector('.sidebar')).display !== 'none' && getComputedStyle(document.querySelector('.main')).display === 'none'", "the chat list alone").await;
    js(&d, "document.querySelector('.chat-item').click(); true").await;
    wait_js(
        &d,
        "!document.querySelector('#conversation').hidden",
        "the conversation again",
    )
    .await;
    d.execute(
        SetDeviceMetricsOverrideParams::builder()
            .width(1200)
            .height(800)
            .device_scale_factor(1.0)
            .mobile(false)
            .build()
            .expect("metrics"),
    )
    .await
    .expect("viewport");
    // One click makes her a contact.
    click(&d, ".add-contact").await;
    wait_js(
        &d,
        "document.querySelector('#conv-name').textContent === 'Erin'",
        "Erin as a contact",
    )
    .await;
    assert_eq!(
        js(&d, "document.querySelector('.add-contact') === null").await,
        true
    );

    // A long history comes in pages: the newest 50, then older ones when
    // scrolled to the top.
    for n in 0..60 {
        ok_stdout(meshchat(&erin.dir).args(["send", "Dave", &format!("line {n}")]));
    }
    wait_js(
        &d,
        "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'line 59')",
        "the last line",
    )
    .await;
    assert_eq!(js(&d, "document.querySelectorAll('.msg').length").await, 50);
    assert_eq!(
        js(&d, "document.querySelector('.older') !== null").await,
        true
    );
    js(&d, "document.querySelector('#messages').scrollTop = 0; document.querySelector('#messages').dispatchEvent(new Event('scroll')); true").await;
    wait_js(
        &d,
        "document.querySelectorAll('.msg').length === 61",
        "the older messages",
    )
    .await;
    assert_eq!(
        js(&d, "document.querySelector('.msg .text').textContent").await,
        "Hello, we met at the crag"
    );

    // Block and unblock from Contacts.
    click(&d, "#show-contacts").await;
    let block =
        "[...document.querySelectorAll('.list-item')].find(li => li.textContent.includes('Erin'))";
    wait_js(&d, block, "Erin in Contacts").await;
    js(&d, &format!("[...{block}.querySelectorAll('button')].find(b => b.textContent === 'Block').click(); true")).await;
    wait_js(&d, &format!("(() => {{ const li = {block}; return li && li.textContent.includes('blocked') && li.textContent.includes('Unblock'); }})()"), "Erin blocked").await;
    js(&d, &format!("[...{block}.querySelectorAll('button')].find(b => b.textContent === 'Unblock').click(); true")).await;
    wait_js(&d, &format!("(() => {{ const li = {block}; return li && !li.textContent.includes('blocked') && li.textContent.includes('Block'); }})()"), "Erin unblocked").await;

    // The keyboard: a focused chat opens with Enter.
    let item = d.find_element(".chat-item").await.expect("a chat");
    item.focus().await.expect("focus the chat");
    item.press_key("Enter").await.expect("Enter");
    wait_js(&d, "!document.querySelector('#conversation').hidden && document.querySelector('#conv-name').textContent === 'Erin'", "the chat opened by keyboard").await;

    // Network and relays.
    click(&d, "#show-settings").await;
    wait_js(
        &d,
        "document.querySelector('.panel').textContent.includes('Relays holding my mail')",
        "the relays screen",
    )
    .await;
    screenshot(&d, "settings").await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
}
