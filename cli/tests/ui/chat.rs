//! Two people chatting through their apps.

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_chat_in_the_browser_and_remote_html_stays_text() {
    let Some(chrome) = chrome() else {
        skip_loudly("two_people_chat_in_the_browser_and_remote_html_stays_text");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alice = Daemon::start(&tmp.path().join("alice"), "Alice");
    let bob = Daemon::start(&tmp.path().join("bob"), "Bob");
    let mut browser = launch(&chrome, &tmp.path().join("chrome")).await;
    let a = open_app(&browser, &alice).await;
    let b = open_app(&browser, &bob).await;
    eprintln!("alice at {}, bob at {}", alice.ui, bob.ui);

    // Each adds the other by the invite the other's app shows.
    add_by_invite(&b, &a).await;
    add_by_invite(&a, &b).await;
    screenshot(&a, "contacts").await;

    // Bob writes first, from his contact list.
    click(&b, "#show-contacts").await;
    click(&b, ".message-contact").await;
    wait_js(
        &b,
        "!document.querySelector('#conversation').hidden",
        "the conversation",
    )
    .await;
    assert_eq!(
        js(&b, "document.querySelector('#conv-name').textContent").await,
        "Alice"
    );
    type_and_enter(&b, "Hi Alice!").await;
    type_and_enter(&b, "How are you?").await;
    let out = last_text(".msg.out .text");
    let shown = wait_js(
        &b,
        &format!("{out} === 'How are you?' && {out}"),
        "Bob's message",
    )
    .await;
    assert_eq!(shown, "How are you?");
    // The composer empties: Enter sent, it did not add a line.
    wait_js(
        &b,
        "document.querySelector('#text').value === ''",
        "an empty composer",
    )
    .await;
    // Ticks reach ✓✓ once Alice's daemon has it.
    wait_js(
        &b,
        "[...document.querySelectorAll('.msg.out .tick')].every(t => ['delivered', 'read'].includes(t.dataset.state)) \
         && document.querySelectorAll('.msg.out .tick').length === 2",
        "✓✓ on both messages",
    )
    .await;
    assert_eq!(
        js(&b, "document.querySelector('.msg.out .tick').textContent").await,
        "✓✓"
    );

    // Alice sees the chat in her list, unread, and opens it.
    wait_js(
        &a,
        "document.querySelector('.chat-item .unread')",
        "an unread badge",
    )
    .await;
    open_first_chat(&a).await;
    let inbound = last_text(".msg.in .text");
    wait_js(
        &a,
        &format!("{inbound} === 'How are you?'"),
        "Bob's message at Alice's",
    )
    .await;
    assert_eq!(
        js(&a, "document.querySelector('#conv-name').textContent").await,
        "Bob"
    );

    // Alice starts typing: Bob sees it in the header.
    a.bring_to_front().await.expect("bring to front");
    let el = a.find_element("#text").await.expect("the composer");
    el.focus().await.expect("focus");
    el.type_str("typing").await.expect("type");
    wait_js(
        &b,
        "document.querySelector('#conv-status').textContent === 'typing…'",
        "the typing indicator",
    )
    .await;
    js(&a, "document.querySelector('#text').value = ''; true").await;

    // Alice answers with hostile markup: it arrives as text, and nothing runs.
    let hostile =
        "<img src=x onerror=\"window.__pwned=1\"> see javascript:window.__pwned=2 <b>bold</b>";
    type_and_enter(&a, hostile).await;
    let inbound_b = last_text(".msg.in .text");
    let expr = format!(
        "{inbound_b} === {}",
        serde_json::to_string(hostile).unwrap()
    );
    wait_js(&b, &expr, "the hostile message at Bob's").await;
    assert_eq!(js(&b, "window.__pwned === undefined").await, true);
    assert_eq!(
        js(
            &b,
            "document.querySelectorAll('.messages img, .messages b, .messages a').length"
        )
        .await,
        0
    );
    assert_eq!(
        js(
            &a,
            "document.querySelectorAll('.messages img, .messages b').length"
        )
        .await,
        0
    );
    // The chat list preview is text too.
    assert_eq!(
        js(&b, "document.querySelectorAll('.chat-preview *').length").await,
        0
    );
    screenshot(&b, "conversation").await;

    // Bob replies to it, quoting.
    js(
        &b,
        "[...document.querySelectorAll('.msg.in .act-reply')].pop().click(); true",
    )
    .await;
    wait_js(
        &b,
        "!document.querySelector('#reply-bar').hidden",
        "the reply bar",
    )
    .await;
    type_and_enter(&b, "That is just text.").await;
    let quote = "(() => { const q = [...document.querySelectorAll('.msg.in .quote')]; return q.length ? q[q.length - 1].textContent : null; })()";
    let quoted = wait_js(&a, quote, "the quote at Alice's").await;
    assert!(quoted.as_str().unwrap().contains("javascript:"), "{quoted}");

    // Alice reacts to Bob's first message; Bob sees it.
    js(&a, "document.querySelector('.msg.in .act-react').click(); document.querySelector('.msg.in .picker button').click(); true").await;
    wait_js(
        &b,
        "document.querySelector('.msg.out .reaction')",
        "the reaction at Bob's",
    )
    .await;
    assert!(js(
        &b,
        "document.querySelector('.msg.out .reaction').textContent"
    )
    .await
    .as_str()
    .unwrap()
    .starts_with("👍"));

    // Bob edits his first message, then deletes his second, for everyone.
    js(
        &b,
        "document.querySelector('.msg.out .act-edit').click(); true",
    )
    .await;
    wait_js(
        &b,
        "document.querySelector('#dialog[open] textarea')",
        "the edit box",
    )
    .await;
    js(
        &b,
        "document.querySelector('#dialog textarea').value = 'Hi Alice! (edited)'; true",
    )
    .await;
    click(&b, "#dialog .primary").await;
    wait_js(&a, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'Hi Alice! (edited)')", "the edit at Alice's").await;
    assert_eq!(
        js(&a, "document.querySelectorAll('.msg.in .edited').length").await,
        1
    );
    js(
        &b,
        "document.querySelectorAll('.msg.out .act-delete')[1].click(); true",
    )
    .await;
    wait_js(
        &b,
        "document.querySelector('#dialog[open] .primary')",
        "the delete question",
    )
    .await;
    click(&b, "#dialog .primary").await;
    wait_js(
        &a,
        "document.querySelector('.msg.in .text.deleted')",
        "the deletion at Alice's",
    )
    .await;
    assert_eq!(js(&a, "[...document.querySelectorAll('.msg.in .text')].some(t => t.textContent === 'How are you?')").await, false);
    screenshot(&a, "conversation-alice").await;

    // Bob drops a picture on the conversation: Alice sees its preview and
    // downloads it byte for byte.
    let downloads = tmp.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    browser
        .execute(
            SetDownloadBehaviorParams::builder()
                .behavior(SetDownloadBehaviorBehavior::Allow)
                .download_path(downloads.display().to_string())
                .events_enabled(true)
                .build()
                .expect("download behaviour"),
        )
        .await
        .expect("allow downloads");
    let sent_b64 = js(&b, DROP_PICTURE).await;
    let sent = decode_b64(sent_b64.as_str().expect("the picture's bytes"));
    assert!(sent.starts_with(b"\x89PNG"), "a PNG");
    wait_js(&a, "(() => { const i = document.querySelector('.msg.in img.preview'); return i && i.complete && i.naturalWidth > 0; })()", "the picture's preview at Alice's").await;
    assert_eq!(
        js(
            &a,
            "document.querySelector('.msg.in .file-name').textContent"
        )
        .await,
        "drawing.png"
    );
    screenshot(&a, "picture").await;
    let mut progress = browser
        .event_listener::<EventDownloadProgress>()
        .await
        .expect("download events");
    click(&a, ".msg.in a.download").await;
    tokio::time::timeout(WAIT, async {
        while let Some(event) = progress.next().await {
            match event.state {
                DownloadProgressState::Completed => return,
                DownloadProgressState::Canceled => panic!("the download was canceled"),
                DownloadProgressState::InProgress => {}
            }
        }
    })
    .await
    .expect("the download completes in time");
    let saved = downloads.join("drawing.png");
    assert_eq!(std::fs::read(&saved).unwrap(), sent, "byte-identical");
    // The card says where the transfer stands.
    wait_js(
        &a,
        "document.querySelector('.msg.in .file-progress').textContent === 'downloaded'",
        "'downloaded' on the card",
    )
    .await;
    // A picture pasted into the composer goes out too.
    js(&b, PASTE_PICTURE).await;
    wait_js(
        &a,
        "[...document.querySelectorAll('.msg.in .file-name')].some(n => n.textContent === 'pasted.png')",
        "the pasted picture at Alice's",
    )
    .await;

    // Alice changes her status and picture; Bob's app shows both.
    click(&a, "#me-button").await;
    wait_js(
        &a,
        "document.querySelector('#profile-name')",
        "the profile screen",
    )
    .await;
    js(
        &a,
        "document.querySelector('#profile-status').value = 'Out climbing'; true",
    )
    .await;
    js(&a, SET_PICTURE).await;
    wait_js(
        &a,
        "document.querySelector('#profile-picture').files.length === 1",
        "the picked picture",
    )
    .await;
    click(&a, "#profile-save").await;
    wait_js(&b, "(() => { const i = document.querySelector('.chat-item .avatar img'); return i && i.complete && i.naturalWidth > 0; })()", "Alice's picture at Bob's").await;
    screenshot(&a, "profile").await;
    click(&b, "#show-contacts").await;
    wait_js(
        &b,
        "[...document.querySelectorAll('.contact-status')].some(s => s.textContent.includes('Out climbing'))",
        "Alice's new status at Bob's",
    )
    .await;
    screenshot(&b, "contacts-list").await;

    // Alice's daemon stops: Bob's app shows when she was last seen, and
    // that no peer is reachable.
    drop(a);
    drop(alice);
    wait_js(
        &b,
        "[...document.querySelectorAll('.contact-status')].some(s => s.textContent.includes('last seen'))",
        "Alice's last seen at Bob's",
    )
    .await;
    wait_js(
        &b,
        "!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('No peer is reachable')",
        "the connection banner",
    )
    .await;

    let _ = browser.close().await;
    let _ = browser.wait().await;
}
