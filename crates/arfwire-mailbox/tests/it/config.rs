//! Configuration parsing, validation and secret handling.

use std::time::Duration;

use arfwire_mailbox::{
    ConfigError, Disposition, ImapConfig, ImapError, ImapPoller, MaildirConfig, Secret, TlsMode,
};

use crate::support::TestLog;

#[test]
fn a_maildir_configuration_parses_with_defaults() {
    let config: MaildirConfig = toml::from_str(r#"path = "/srv/mail/junk""#).unwrap();
    assert_eq!(config, MaildirConfig::new("/srv/mail/junk"));
    assert_eq!(config.poll_interval, Duration::from_secs(5));
    assert!(!config.include_cur);

    let config: MaildirConfig = toml::from_str(
        r#"
        path = "/srv/mail/junk"
        include_cur = true
        processed = "/srv/mail/junk/.Done"
        poll_interval_secs = 0.25
        retry_min_secs = 2
        retry_max_secs = 60
        max_message_bytes = 1000
        "#,
    )
    .unwrap();
    assert_eq!(config.poll_interval, Duration::from_millis(250));
    assert_eq!(config.retry_min, Duration::from_secs(2));
    assert!(config.validate().is_ok());
}

#[test]
fn unknown_and_bad_fields_are_errors() {
    let error = toml::from_str::<MaildirConfig>("path = \"/x\"\npoll_interval = 5\n").unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
    let error =
        toml::from_str::<MaildirConfig>("path = \"/x\"\npoll_interval_secs = -1\n").unwrap_err();
    assert!(error.to_string().contains("seconds"), "{error}");
    let error = toml::from_str::<ImapConfig>(
        r#"
        host = "imap.example.net"
        username = "junk@example.net"
        password_env = "ARFWIRE_IMAP_PASSWORD"
        state_file = "/var/lib/arfwire/imap.json"
        on_success = { action = "move", mailbox = "Done", flag = "\\Seen" }
        "#,
    )
    .unwrap_err();
    assert!(error.to_string().contains("unknown field"), "{error}");
}

#[test]
fn an_imap_configuration_parses_with_defaults() {
    let config: ImapConfig = toml::from_str(
        r#"
        host = "imap.example.net"
        username = "junk@example.net"
        password_env = "ARFWIRE_IMAP_PASSWORD"
        state_file = "/var/lib/arfwire/imap.json"
        on_success = { action = "flag", flag = "$ArfwireProcessed" }
        "#,
    )
    .unwrap();
    assert_eq!(config.tls, TlsMode::Implicit);
    assert_eq!(config.effective_port(), 993);
    assert_eq!(config.mailbox, "INBOX");
    assert!(config.idle);
    assert_eq!(config.idle_renew, Duration::from_secs(25 * 60));
    assert_eq!(
        config.on_success,
        Disposition::Flag {
            flag: "$ArfwireProcessed".into()
        }
    );
    assert!(config.validate().is_ok());

    let config: ImapConfig = toml::from_str(
        r#"
        host = "127.0.0.1"
        tls = "starttls"
        username = "junk"
        password = "hunter2"
        state_file = "state.json"
        idle = false
        poll_interval_secs = 30
        [on_success]
        action = "move"
        mailbox = "Processed"
        "#,
    )
    .unwrap();
    assert_eq!(config.effective_port(), 143);
    assert_eq!(
        config.on_success,
        Disposition::Move {
            mailbox: "Processed".into()
        }
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let mut config = ImapConfig::new(
        "imap.example.net",
        "junk@example.net",
        "ARFWIRE_IMAP_PASSWORD",
        Disposition::Flag {
            flag: "\\Seen".into(),
        },
        "state.json",
    );
    config.password_env = None;
    config.password = Some(Secret::new("correct horse battery staple"));
    let printed = format!("{config:?} {:?}", config.password);
    assert!(!printed.contains("correct horse"), "{printed}");
    assert!(printed.contains("[REDACTED]"), "{printed}");
    assert_eq!(Secret::new("x").to_string(), "[REDACTED]");
}

#[test]
fn the_password_comes_from_the_named_variable() {
    let mut config = ImapConfig::new(
        "imap.example.net",
        "junk",
        // Any variable that is surely set stands in for the password here.
        "PATH",
        Disposition::Flag {
            flag: "\\Seen".into(),
        },
        "state.json",
    );
    let path = std::env::var("PATH").unwrap();
    assert_eq!(config.resolve_password().unwrap().expose(), path);

    config.password_env = Some("ARFWIRE_TEST_SURELY_UNSET_VARIABLE".into());
    let error = config.resolve_password().unwrap_err();
    assert!(matches!(error, ConfigError::MissingSecret { .. }));
    let error = ImapPoller::new(config, TestLog::accepting()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("ARFWIRE_TEST_SURELY_UNSET_VARIABLE"),
        "{error}"
    );
}

#[test]
fn imap_values_are_checked() {
    let base = || {
        let mut config = ImapConfig::new(
            "imap.example.net",
            "junk",
            "PATH",
            Disposition::Flag {
                flag: "$ArfwireProcessed".into(),
            },
            "state.json",
        );
        config.tls = TlsMode::None;
        config
    };
    let invalid_field = |config: ImapConfig| match config.validate() {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    };

    let mut config = base();
    config.on_success = Disposition::Flag {
        flag: "two words".into(),
    };
    assert_eq!(invalid_field(config), "on_success.flag");
    let mut config = base();
    config.on_success = Disposition::Flag {
        flag: "\\Deleted".into(),
    };
    assert_eq!(invalid_field(config), "on_success.flag");
    let mut config = base();
    config.on_success = Disposition::Move {
        mailbox: "INBOX".into(),
    };
    assert_eq!(invalid_field(config), "on_success.mailbox");
    let mut config = base();
    config.idle_renew = Duration::from_secs(30 * 60);
    assert_eq!(invalid_field(config), "idle_renew_secs");
    let mut config = base();
    config.password = Some(Secret::new("also"));
    assert_eq!(invalid_field(config), "password_env");
    assert!(base().validate().is_ok());
}

#[tokio::test]
async fn a_missing_state_directory_stops_the_poller() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ImapConfig::new(
        "127.0.0.1",
        "junk",
        "PATH",
        Disposition::Flag {
            flag: "\\Seen".into(),
        },
        dir.path().join("absent").join("state.json"),
    );
    config.tls = TlsMode::None;
    config.port = Some(1);
    let poller = ImapPoller::new(config, TestLog::accepting()).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), poller.run(std::future::pending()))
        .await
        .expect("fails at once")
        .unwrap_err();
    assert!(matches!(error, ImapError::Config(_)), "{error}");
}
