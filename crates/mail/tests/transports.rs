//! The transports against real servers: SMTP through the testkit's SMTP server over a socket,
//! files in a folder of the test's own.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::time::{Duration, Instant};

use keel_domain::{MailError, Mailer as _};
use keel_mail::{FileMailer, MailKind, SmtpConfig, SmtpMailer, Templates};
use keel_testkit::eventually;
use keel_testkit::smtp::SmtpSink;
use secrecy::SecretString;

const FROM: &str = "Keel <no-reply@keel.test>";

fn verify_mail(to: &str) -> keel_domain::Mail {
    Templates::load(None)
        .unwrap()
        .render(
            MailKind::VerifyEmail,
            to,
            &[
                ("display_name", "Ada"),
                ("link", "https://app.example/verify-email?token=tok123"),
                ("app_url", "https://app.example"),
            ],
        )
        .unwrap()
}

fn smtp(url: String) -> SmtpMailer {
    SmtpMailer::new(&SmtpConfig {
        url: SecretString::from(url),
        from: FROM.into(),
        timeout: Duration::from_secs(2),
        pool_size: 2,
    })
    .unwrap()
}

#[tokio::test]
async fn smtp_delivers_both_parts_with_the_envelope() {
    let sink = SmtpSink::start();
    let mailer = smtp(sink.url());
    mailer.send(verify_mail("ada@example.com")).await.unwrap();
    // A second message on the pooled connection.
    mailer.send(verify_mail("bob@example.com")).await.unwrap();

    let received = sink.received();
    assert_eq!(received.len(), 2);
    let first = &received[0];
    assert_eq!(first.from, "no-reply@keel.test");
    assert_eq!(first.to, ["ada@example.com"]);
    assert!(
        first.data.contains("Subject: Confirm your e-mail address"),
        "{}",
        first.data
    );
    assert!(
        first.data.contains("multipart/alternative"),
        "{}",
        first.data
    );
    assert!(first.data.contains("text/plain") && first.data.contains("text/html"));
    assert!(first.data.contains("tok123"), "the link is in the message");
    assert_eq!(received[1].to, ["bob@example.com"]);
}

#[tokio::test]
async fn a_stopped_smtp_server_is_unavailable_in_time_and_serves_again_when_back() {
    let mut sink = SmtpSink::start();
    let mailer = smtp(sink.url());
    sink.stop();
    let started = Instant::now();
    let error = mailer
        .send(verify_mail("ada@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(error, MailError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    sink.start_again();
    eventually(
        "a send once the server is back",
        Duration::from_secs(10),
        || async { mailer.send(verify_mail("ada@example.com")).await },
    )
    .await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn bad_addresses_and_urls_are_refused_without_leaking_the_password() {
    let sink = SmtpSink::start();
    let error = smtp(sink.url())
        .send(verify_mail("not an address"))
        .await
        .unwrap_err();
    assert!(matches!(error, MailError::Rejected(_)), "{error:?}");
    assert!(sink.received().is_empty());

    let error = SmtpMailer::new(&SmtpConfig {
        url: SecretString::from("http://user:hunter2@mail.example".to_owned()),
        from: FROM.into(),
        timeout: Duration::from_secs(1),
        pool_size: 1,
    })
    .unwrap_err();
    assert_eq!(error.key(), "mail.smtp_url");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    // A usable URL with credentials whose server is gone: the error names no password.
    let mut gone = SmtpSink::start();
    let url = gone.url().replace("smtp://", "smtp://user:hunter2@");
    gone.stop();
    let error = smtp(url)
        .send(verify_mail("ada@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(error, MailError::Unavailable(_)), "{error:?}");
    let shown = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert!(!shown.contains("hunter2"), "{shown}");
    // Credentials in clear over the network are refused; to this machine, or with TLS, fine.
    for (url, refused) in [
        ("smtp://user:hunter2@mail.example:587", true),
        ("smtp://user:hunter2@mail.example:587?tls=required", false),
        ("smtps://user:hunter2@mail.example:465", false),
        ("smtp://user:hunter2@127.0.0.1:2525", false),
        ("smtp://mail.example:25", false),
    ] {
        let built = SmtpMailer::new(&SmtpConfig {
            url: SecretString::from(url.to_owned()),
            from: FROM.into(),
            timeout: Duration::from_secs(1),
            pool_size: 1,
        });
        assert_eq!(built.is_err(), refused, "{url}");
        if let Err(error) = built {
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }
    let error = SmtpMailer::new(&SmtpConfig {
        url: SecretString::from(sink.url()),
        from: "not a mailbox".into(),
        timeout: Duration::from_secs(1),
        pool_size: 1,
    })
    .unwrap_err();
    assert_eq!(error.key(), "mail.from");
}

#[tokio::test]
async fn the_file_transport_writes_one_eml_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let mailer = FileMailer::new(dir.path().join("mail"), FROM).unwrap();
    mailer.send(verify_mail("ada@example.com")).await.unwrap();
    mailer.send(verify_mail("bob@example.com")).await.unwrap();

    let files: Vec<_> = std::fs::read_dir(mailer.dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "no partial file is left: {files:?}");
    assert!(files.iter().all(|path| path.extension().unwrap() == "eml"));
    let texts: Vec<String> = files
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    for to in ["To: ada@example.com", "To: bob@example.com"] {
        let text = texts.iter().find(|text| text.contains(to)).unwrap();
        assert!(text.contains("tok123"), "{text}");
    }
}
