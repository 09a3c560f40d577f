//! Notices to the old contact (docs/notifications.md), on both backends, through a real SMTP
//! server (aiosmtpd) and a real HTTP receiver for the SMS webhook: who is told, what they are
//! told (never the new value unmasked), the webhook's signature, an SMTP server down for a
//! while, a dead letter, no channel at all, a tenant's settings, and a sender killed between
//! its send and its bookkeeping.

use crate::support::mail::{SmtpSink, WebhookReceiver};
use crate::support::{Backend, Options, TestApp, fresh_store, run, spawn_store};
use hmac::{Hmac, Mac};
use recovery_info::domain::{MethodKind, NoticeKind, mask};
use recovery_info::notify::NotifierConfig;
use recovery_info::notify::channels::{Channels, Smtp, Webhook};
use recovery_info::store::NotificationStorage;
use recovery_info::store::notifications::{Channel, Notification, Status};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

crate::on_both_backends!(
    changes_are_told_to_the_old_contact_by_email_and_sms,
    notices_wait_for_an_smtp_server_that_is_down_and_arrive_once,
    a_permanently_failing_address_ends_as_a_dead_letter,
    without_a_channel_notices_are_recorded_as_not_delivered,
    a_tenant_chooses_the_language_and_turns_kinds_off,
    a_sender_killed_between_send_and_mark_sends_again_and_loses_nothing,
);

const WEBHOOK_SECRET: &str = "webhook-secret-for-the-tests";
const FROM: &str = "Security <security@contoso.example>";

fn notifier(smtp: Option<&SmtpSink>, webhook: Option<&WebhookReceiver>) -> NotifierConfig {
    NotifierConfig {
        channels: Channels {
            smtp: smtp.map(|s| Smtp::new(&s.url(), FROM).unwrap()),
            webhook: webhook.map(|w| Webhook::new(&w.url, WEBHOOK_SECRET).unwrap()),
        },
        report_to: "security@contoso.example".into(),
        max_attempts: 8,
        backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        lease: Duration::from_secs(5),
        poll: Duration::from_millis(50),
    }
}

async fn spawn_notifying(backend: Backend, notifier: NotifierConfig) -> TestApp {
    spawn_store(
        fresh_store(backend).await,
        Options {
            notifier: Some(notifier),
            ..Options::default()
        },
    )
    .await
}

/// Waits until `done` holds, for up to 20 s.
async fn eventually<T>(what: &str, mut done: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = done().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox(app: &TestApp, status: Option<Status>) -> Vec<Notification> {
    app.store().notifications(status, 1000).await.unwrap()
}

async fn method(app: &TestApp, admin: Uuid, kind: &str, value: &str) -> String {
    app.add_ok(admin, kind, value).await
}

async fn changes_are_told_to_the_old_contact_by_email_and_sms(backend: Backend) {
    let sink = SmtpSink::start(&[]);
    let hook = WebhookReceiver::start().await;
    let app = spawn_notifying(backend, notifier(Some(&sink), Some(&hook))).await;
    let admin = Uuid::now_v7();
    // The first method has nobody to tell; the mobile is told to the email.
    let email = method(&app, admin, "email", "jane.private@example.org").await;
    let mobile = method(&app, admin, "mobile_phone", "+45 20 12 34 56").await;
    // The email replaced: the old one is told. The mobile replaced: the old number, by SMS.
    let r = app.change(admin, &email, "jane.new@example.net").await;
    assert_eq!(r.status(), 200);
    let r = app.change(admin, &mobile, "+45 40 11 22 33").await;
    assert_eq!(r.status(), 200);
    // The email removed: its (new) value is told.
    let r = app.remove(admin, &email).await;
    assert_eq!(r.status(), 200);

    let mails = eventually("three emails", async || {
        let m = sink.messages();
        (m.len() >= 3).then_some(m)
    })
    .await;
    let hooks = eventually("one SMS", async || {
        let h = hook.hooks();
        (!h.is_empty()).then_some(h)
    })
    .await;
    let mut to: Vec<_> = mails.iter().map(|m| m.to.join(",")).collect();
    to.sort();
    assert_eq!(
        to,
        [
            "jane.new@example.net",
            "jane.private@example.org",
            "jane.private@example.org"
        ]
    );
    let subjects: BTreeSet<_> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "A mobile phone was added to your security info",
            "Your alternate email was changed",
            "Your alternate email was removed",
        ])
    );
    let changed = mails
        .iter()
        .find(|m| m.subject == "Your alternate email was changed")
        .unwrap();
    for part in [&changed.text, &changed.html, &changed.raw] {
        assert!(
            !part.contains("jane.new@example.net"),
            "the new value told: {part}"
        );
    }
    assert!(
        changed
            .text
            .contains(&mask(MethodKind::Email, "jane.new@example.net"))
    );
    assert!(changed.text.contains("helpdesk-1"), "{}", changed.text);
    assert!(changed.text.contains("security@contoso.example"));
    assert!(changed.text.contains("If this was not you"));
    let added = mails
        .iter()
        .find(|m| m.subject.starts_with("A mobile"))
        .unwrap();
    assert!(!added.raw.contains("20123456") && !added.text.contains("20 12 34 56"));

    // Every Message-ID is its notice's id; each notice once.
    let sent = eventually("four notices sent", async || {
        let sent = outbox(&app, Some(Status::Sent)).await;
        (sent.len() == 4).then_some(sent)
    })
    .await;
    let email_ids: BTreeSet<String> = sent
        .iter()
        .filter(|n| n.channel == Channel::Email)
        .map(|n| format!("<{}@contoso.example>", n.id))
        .collect();
    let message_ids: BTreeSet<String> = mails.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(message_ids, email_ids);

    // The SMS: to the old number, signed, the new number not in it.
    assert_eq!(hooks.len(), 1);
    let sms = &hooks[0];
    let body = sms.json();
    assert_eq!(body["to"], "+4520123456");
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["kind"], "method_changed");
    assert_eq!(body["language"], "en");
    let text = body["text"].as_str().unwrap();
    assert!(
        !text.contains("40112233") && !text.contains("40 11 22 33"),
        "{text}"
    );
    assert!(text.contains("If this was not you"), "{text}");
    let sms_notice = sent.iter().find(|n| n.channel == Channel::Sms).unwrap();
    assert_eq!(sms.header("idempotency-key"), sms_notice.id.to_string());
    assert_eq!(body["id"], sms_notice.id.to_string());
    let timestamp: i64 = sms.header("x-recovery-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&sms.body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(sms.header("x-recovery-signature"), expected);
    // A signature with another secret does not match (the check can fail).
    let mut other = Hmac::<sha2::Sha256>::new_from_slice(b"another secret, 16+ bytes").unwrap();
    other.update(format!("{timestamp}.").as_bytes());
    other.update(&sms.body);
    assert_ne!(
        sms.header("x-recovery-signature"),
        format!("v1={}", hex::encode(other.finalize().into_bytes()))
    );

    // The outbox keeps no contact value.
    let listed = run(&app.store_config, &["notifications", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.lines().count(), 4, "{listed}");
    for value in ["jane", "2012", "4011"] {
        assert!(!listed.contains(value), "{listed}");
    }
    let ids = [sms_notice.id.to_string()];
    assert!(ids.iter().all(|id| listed.contains(id.as_str())));
}

async fn notices_wait_for_an_smtp_server_that_is_down_and_arrive_once(backend: Backend) {
    let mut sink = SmtpSink::stopped(&[]);
    let app = spawn_notifying(backend, notifier(Some(&sink), None)).await;
    let admin = Uuid::now_v7();
    let email = method(&app, admin, "email", "jane.private@example.org").await;
    method(&app, admin, "mobile_phone", "+45 20 12 34 56").await;
    assert_eq!(
        app.change(admin, &email, "jane.new@example.net")
            .await
            .status(),
        200
    );
    // Down: each notice fails and waits.
    eventually("two failed tries each", async || {
        let pending = outbox(&app, Some(Status::Pending)).await;
        (pending.len() == 2 && pending.iter().all(|n| n.attempts >= 2)).then_some(())
    })
    .await;
    let pending = outbox(&app, Some(Status::Pending)).await;
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("SMTP"),
        "{pending:?}"
    );
    assert!(sink.messages().is_empty());
    // Back: every notice arrives, once.
    sink.restart();
    let mails = eventually("two emails", async || {
        let m = sink.messages();
        (m.len() >= 2).then_some(m)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails_after = sink.messages();
    assert_eq!(mails_after.len(), 2, "{mails_after:?}");
    let ids: BTreeSet<_> = mails.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(outbox(&app, Some(Status::Sent)).await.len(), 2);
}

async fn a_permanently_failing_address_ends_as_a_dead_letter(backend: Backend) {
    let sink = SmtpSink::start(&[("SMTP_SINK_REJECT", "gone@example.org")]);
    let app = spawn_notifying(
        backend,
        NotifierConfig {
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            ..notifier(Some(&sink), None)
        },
    )
    .await;
    let admin = Uuid::now_v7();
    method(&app, admin, "email", "gone@example.org").await;
    method(&app, admin, "mobile_phone", "+45 20 12 34 56").await;
    let dead = eventually("a dead letter", async || {
        outbox(&app, Some(Status::Failed)).await.pop()
    })
    .await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.kind, NoticeKind::MethodAdded);
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550"),
        "{dead:?}"
    );
    // Visible to the operator, and sent again on request.
    let listed = run(&app.store_config, &["notifications", "list", "--failed"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.starts_with(&format!("{} failed email method_added tries=3", dead.id)),
        "{listed}"
    );
    // The gauges are read again at most every second while the outbox changes.
    eventually("the dead letter on /metrics", async || {
        let metrics = app.metrics().await;
        metrics
            .contains("recovery_notifications{status=\"failed\"} 1")
            .then_some(())
    })
    .await;
    let out = run(
        &app.store_config,
        &["notifications", "retry", "--all-failed"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "notifications to send again: 1",
        "{out:?}"
    );
    eventually("the retried notice failing again", async || {
        let n = outbox(&app, Some(Status::Failed)).await.pop()?;
        (n.attempts == 3 && n.id == dead.id).then_some(())
    })
    .await;
    assert!(sink.messages().is_empty());
    let out = run(&app.store_config, &["notifications", "retry"]);
    assert_eq!(out.status.code(), Some(2), "ids or --all-failed: {out:?}");
}

async fn without_a_channel_notices_are_recorded_as_not_delivered(backend: Backend) {
    let app = spawn_notifying(backend, notifier(None, None)).await;
    let admin = Uuid::now_v7();
    method(&app, admin, "email", "jane.private@example.org").await;
    method(&app, admin, "mobile_phone", "+45 20 12 34 56").await;
    let skipped = eventually("a skipped notice", async || {
        outbox(&app, Some(Status::Skipped)).await.pop()
    })
    .await;
    assert_eq!(
        skipped.last_error.as_deref(),
        Some("not delivered: no email channel configured")
    );
    assert_eq!(
        skipped.id,
        Notification::id_of(skipped.event_id, skipped.method_id, skipped.recipient)
    );
}

async fn a_tenant_chooses_the_language_and_turns_kinds_off(backend: Backend) {
    let sink = SmtpSink::start(&[]);
    let hook = WebhookReceiver::start().await;
    let app = spawn_notifying(backend, notifier(Some(&sink), Some(&hook))).await;
    let r = app
        .put_settings(json!({"notifications": {"language": "da", "disabled": ["method_added"]}}))
        .await;
    assert_eq!(r.status(), 200);
    let settings: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        settings["notifications"],
        json!({"language": "da", "disabled": ["method_added"]})
    );
    let r = app
        .put_settings(json!({"notifications": {"language": "fr"}}))
        .await;
    crate::support::assert_problem(r, 422, "unknown_language").await;
    let admin = Uuid::now_v7();
    method(&app, admin, "email", "jane.private@example.org").await;
    let mobile = method(&app, admin, "mobile_phone", "+45 20 12 34 56").await;
    assert_eq!(
        app.change(admin, &mobile, "+45 40 11 22 33").await.status(),
        200
    );
    let hooks = eventually("one SMS", async || {
        let h = hook.hooks();
        (!h.is_empty()).then_some(h)
    })
    .await;
    let body = hooks[0].json();
    assert_eq!(body["language"], "da");
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("blev ændret") && text.contains("Hvis det ikke var dig"),
        "{text}"
    );
    // The addition of the mobile was not told: turned off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.messages().is_empty());
    let all = outbox(&app, None).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].kind, NoticeKind::MethodChanged);
}

/// `serve` as a process of its own on `config`, sending through `sink`; its base URL.
fn serve_child(
    config: &recovery_info::store::StoreConfig,
    sink: &SmtpSink,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut cmd = crate::support::bin(
        config,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--no-checkpoints",
            "--smtp-url",
            &sink.url(),
            "--smtp-from",
            FROM,
            "--notify-lease",
            "2s",
            "--notify-retry",
            "1s",
        ],
    );
    cmd.env("RECOVERY_JWT_SECRET", crate::support::SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let base = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("recovery-info listening on ")
                .map(str::to_owned)
        })
        .expect("the banner");
    // The rest of the banner is read (and dropped) so that the child never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

async fn a_sender_killed_between_send_and_mark_sends_again_and_loses_nothing(backend: Backend) {
    // The SMTP server takes 3 s to answer each DATA: the sender is killed in that window,
    // after the message arrived and before the 250 (and the outbox's "sent") could.
    let sink = SmtpSink::start(&[("SMTP_SINK_DELAY", "3")]);
    let config = fresh_store(backend).await;
    let _dir = crate::support::DataDirGuard::of(&config);
    let (mut child, base) = serve_child(&config, &sink);
    let tenant = Uuid::now_v7();
    let admin = Uuid::now_v7();
    let token = recovery_info::http::auth::JwtKeys::new(crate::support::SECRET.as_bytes())
        .mint(
            tenant,
            "helpdesk-1",
            &[recovery_info::http::auth::Role::AuthenticationAdmin],
            600,
        )
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/tenants/{tenant}/admins/{admin}/methods");
    let mut ids = Vec::new();
    for (kind, value) in [
        ("email", "jane.private@example.org"),
        ("mobile_phone", "+45 20 12 34 56"),
    ] {
        let r = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"kind": kind, "value": value}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["method"]["id"].as_str().unwrap().to_owned());
    }
    let r = client
        .patch(format!("{url}/{}", ids[0]))
        .bearer_auth(&token)
        .json(&json!({"value": "jane.new@example.net"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("a message in the SMTP server's hands", async || {
        (sink.received_pending() >= 1).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL, mid-send
    child.wait().unwrap();
    let (mut child, _) = serve_child(&config, &sink);

    // Every notice arrives; one may arrive twice, with the same Message-ID, never a third
    // time and never under another id.
    let store = recovery_info::store::Store::open(&config).await.unwrap();
    let sent = eventually("both notices sent", async || {
        let sent = store.notifications(Some(Status::Sent), 10).await.unwrap();
        (sent.len() == 2).then_some(sent)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let expected: BTreeSet<String> = sent
        .iter()
        .map(|n| format!("<{}@contoso.example>", n.id))
        .collect();
    let mails = sink.messages();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for m in &mails {
        *seen.entry(m.message_id.clone()).or_default() += 1;
    }
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{mails:?}"
    );
    assert!(seen.values().all(|&n| n <= 2), "{seen:?}");
    assert!(
        seen.values().any(|&n| n == 2),
        "the killed send should have been sent again: {seen:?}"
    );
}
