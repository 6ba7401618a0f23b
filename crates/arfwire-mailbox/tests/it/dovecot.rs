//! A private Dovecot IMAP server for the tests.
//!
//! Each test starts its own instance as a child process (`dovecot -F -c <config>`), listening
//! on 127.0.0.1 at a free port, with everything it writes (configuration, sockets, state, log,
//! mail) in one temporary directory. Dropping the [`Dovecot`] stops it (SIGTERM, then SIGKILL
//! after 5 s) and removes the directory. The system's own Dovecot configuration and service
//! are not used or touched.
//!
//! Dovecot must be installed: on Debian, the package `dovecot-imapd` (which brings
//! `dovecot-core`, with `dovecot`, `doveadm` and `openssl`). Without it the tests fail; they
//! are never skipped.
//!
//! What makes a private instance work, found by trial:
//!
//! * Users come from a `passwd-file` (used as passdb and userdb) with a `{PLAIN}` password
//!   and empty uid/gid/home fields; `mail_uid`/`mail_gid` and `mail_home` are set globally.
//! * Run as root (the usual CI case): Dovecot refuses mail access as root ("Mail access not
//!   allowed for root") and refuses uid 0 in a passwd-file, so mail is accessed as `nobody`
//!   (its uid and gid looked up with `id`), with `first_valid_uid`/`first_valid_gid` lowered
//!   to allow it. The mail directory is owned by `nobody`, and the temporary directory is
//!   made world-traversable (0755) so the `auth` process (run as the `dovecot` user) can read
//!   the passwd-file and the mail processes can reach the mail. The internal and login users
//!   are the Debian package's own `dovecot` and `dovenull`.
//! * Run as an ordinary user: every Dovecot process runs as that user
//!   (`default_internal_user`, `default_login_user`), and the `chroot` of the `imap-login` and
//!   `anvil` services is switched off, since only root may chroot.
//! * `ssl = no` and `disable_plaintext_auth = no` allow `LOGIN` over plain TCP; the TLS
//!   variant instead sets `ssl = required` with a certificate made by `openssl` for
//!   `localhost`, signed by a throwaway CA.
//! * `mailbox_idle_check_interval = 1 secs` bounds how late `IDLE` notices new files even
//!   without inotify.
//! * `imap_capability` (optional) replaces the advertised capabilities, to test what the
//!   poller does without `MOVE` or `IDLE`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The test user.
pub(crate) const USER: &str = "tester";
/// The test user's password.
pub(crate) const PASSWORD: &str = "test-password-only";

const START_LIMIT: Duration = Duration::from_secs(15);

/// How a test wants the server set up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Replace the capabilities advertised after login (`imap_capability`).
    pub(crate) capabilities: Option<&'static str>,
    /// Require TLS: implicit TLS on the `imaps` port and `STARTTLS` on the `imap` port.
    pub(crate) tls: bool,
}

/// One message as `doveadm fetch` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) uid: u32,
    pub(crate) flags: Vec<String>,
}

impl Stored {
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// A running private Dovecot.
pub(crate) struct Dovecot {
    child: Option<Child>,
    root: tempfile::TempDir,
    port: u16,
    tls_port: Option<u16>,
    /// The uid and gid that own the mail, when running as root.
    mail_owner: Option<(u32, u32)>,
    deliveries: AtomicU32,
}

impl Dovecot {
    /// Start a server with the default options.
    pub(crate) fn start() -> Dovecot {
        Dovecot::start_with(Options::default())
    }

    /// Start a server.
    pub(crate) fn start_with(options: Options) -> Dovecot {
        let dovecot = require("dovecot");
        require("doveadm");
        let root = tempfile::Builder::new()
            .prefix("arfwire-dovecot-")
            .tempdir()
            .expect("create a temporary directory");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let identity = Identity::current();
        let mail = root.path().join("mail").join(USER);
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(mail.join(sub)).unwrap();
        }
        if let Some((uid, gid)) = identity.mail_owner {
            chown_tree(&root.path().join("mail"), uid, gid);
        }
        fs::write(
            root.path().join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}:::::\n"),
        )
        .unwrap();
        if options.tls {
            make_certificate(root.path());
        }

        // Another process may take the free port between the probe and Dovecot's bind:
        // try again with another port when that happens.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            let config = config_text(root.path(), &identity, &options, port, tls_port);
            let config_path = root.path().join("dovecot.conf");
            fs::write(&config_path, config).unwrap();
            let output = fs::File::create(root.path().join("dovecot.out")).unwrap();
            let mut child = Command::new(&dovecot)
                .arg("-F")
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .expect("start dovecot");
            match wait_until_ready(&mut child, root.path(), port) {
                Ok(()) => {
                    return Dovecot {
                        child: Some(child),
                        root,
                        port,
                        tls_port,
                        mail_owner: identity.mail_owner,
                        deliveries: AtomicU32::new(0),
                    };
                }
                Err(failure) => {
                    stop_child(child);
                    last_failure = failure;
                    if !last_failure.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("Dovecot did not start:\n{last_failure}");
    }

    /// The plain IMAP port (with TLS: the `STARTTLS` port).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when started with TLS.
    pub(crate) fn tls_port(&self) -> u16 {
        self.tls_port.expect("started with tls")
    }

    /// The CA certificate that signed the server's, when started with TLS.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.root.path().join("ca.pem")
    }

    /// The test user's Maildir (INBOX).
    pub(crate) fn maildir(&self) -> PathBuf {
        self.root.path().join("mail").join(USER)
    }

    /// The server's log.
    pub(crate) fn log(&self) -> String {
        log_of(self.root.path())
    }

    /// Deliver a message into the INBOX as an MDA would (write into `tmp/`, rename into
    /// `new/`), and have Dovecot assign its UID at once, so UIDs follow delivery order.
    /// Returns the UID.
    pub(crate) fn deliver(&self, bytes: &[u8]) -> u32 {
        let n = self.deliveries.fetch_add(1, Ordering::SeqCst);
        let name = format!(
            "{}.M{n}P{}.arfwire-test",
            1_700_000_000 + n,
            std::process::id()
        );
        let maildir = self.maildir();
        let tmp = maildir.join("tmp").join(&name);
        fs::write(&tmp, bytes).unwrap();
        if let Some((uid, gid)) = self.mail_owner {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).unwrap();
        }
        fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
        let listing = self.doveadm(&[
            "-f", "tab", "fetch", "-u", USER, "uid guid", "mailbox", "INBOX",
        ]);
        listing
            .lines()
            .skip(1)
            .find_map(|line| {
                let (uid, guid) = line.split_once('\t')?;
                (guid == name).then(|| uid.parse().unwrap())
            })
            .unwrap_or_else(|| panic!("Dovecot did not list {name}:\n{listing}"))
    }

    /// The messages of a mailbox, by UID.
    pub(crate) fn messages(&self, mailbox: &str) -> Vec<Stored> {
        let listing = self.doveadm(&[
            "-f",
            "tab",
            "fetch",
            "-u",
            USER,
            "uid flags",
            "mailbox",
            mailbox,
        ]);
        let mut stored: Vec<Stored> = listing
            .lines()
            .skip(1)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (uid, flags) = line.split_once('\t').unwrap_or((line, ""));
                Stored {
                    uid: uid.parse().unwrap(),
                    flags: flags.split_whitespace().map(str::to_owned).collect(),
                }
            })
            .collect();
        stored.sort_by_key(|message| message.uid);
        stored
    }

    /// The UIDs of a mailbox.
    pub(crate) fn uids(&self, mailbox: &str) -> Vec<u32> {
        self.messages(mailbox)
            .iter()
            .map(|message| message.uid)
            .collect()
    }

    /// The mailbox's `UIDVALIDITY`.
    pub(crate) fn uid_validity(&self, mailbox: &str) -> u32 {
        let status = self.doveadm(&[
            "-f",
            "tab",
            "mailbox",
            "status",
            "-u",
            USER,
            "uidvalidity",
            mailbox,
        ]);
        status
            .lines()
            .nth(1)
            .and_then(|line| line.rsplit('\t').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no UIDVALIDITY in {status:?}"))
    }

    /// Give the mailbox a new `UIDVALIDITY`, as a server does when it rebuilds a mailbox.
    pub(crate) fn set_uid_validity(&self, mailbox: &str, value: u32) {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            &value.to_string(),
            mailbox,
        ]);
    }

    /// Run doveadm against this instance's configuration; panic on failure.
    pub(crate) fn doveadm(&self, args: &[&str]) -> String {
        let output = Command::new(require("doveadm"))
            .arg("-c")
            .arg(self.root.path().join("dovecot.conf"))
            .args(args)
            .output()
            .expect("run doveadm");
        assert!(
            output.status.success(),
            "doveadm {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

fn log_of(root: &Path) -> String {
    let mut text = fs::read_to_string(root.join("dovecot.log")).unwrap_or_default();
    text.push_str(&fs::read_to_string(root.join("dovecot.out")).unwrap_or_default());
    text
}

/// Wait until the server greets on its port.
fn wait_until_ready(child: &mut Child, root: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dovecot exited with {status}:\n{}", log_of(root)));
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut greeting = [0u8; 4];
            if stream.read_exact(&mut greeting).is_ok() && &greeting == b"* OK" {
                let _ = stream.write_all(b"a LOGOUT\r\n");
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no greeting within {START_LIMIT:?}:\n{}",
                log_of(root)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop the server: SIGTERM (Dovecot then stops its children), SIGKILL after 5 s.
fn stop_child(mut child: Child) {
    let _ = Command::new("sh")
        .args(["-c", "kill -TERM \"$1\"", "sh", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

/// Who the tests run as, and what that means for Dovecot's users.
struct Identity {
    /// Running as root: mail is owned by, and accessed as, this uid and gid (`nobody`).
    mail_owner: Option<(u32, u32)>,
    /// The user and group names to run Dovecot's own processes as, when not root.
    user: String,
    group: String,
}

impl Identity {
    fn current() -> Identity {
        let uid: u32 = id(&["-u"]).parse().expect("numeric uid");
        if uid == 0 {
            let nobody_uid = id(&["-u", "nobody"]).parse().expect("uid of nobody");
            let nobody_gid = id(&["-g", "nobody"]).parse().expect("gid of nobody");
            Identity {
                mail_owner: Some((nobody_uid, nobody_gid)),
                user: "dovecot".into(),
                group: "dovecot".into(),
            }
        } else {
            Identity {
                mail_owner: None,
                user: id(&["-un"]),
                group: id(&["-gn"]),
            }
        }
    }
}

fn id(args: &[&str]) -> String {
    let output = Command::new("id").args(args).output().expect("run id");
    assert!(output.status.success(), "id {args:?} failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn config_text(
    root: &Path,
    identity: &Identity,
    options: &Options,
    port: u16,
    tls_port: Option<u16>,
) -> String {
    let root = root.display();
    let mut config = format!(
        "# A private instance for one test; nothing here is read from /etc/dovecot.
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
mail_location = maildir:{root}/mail/%u
mail_home = {root}/mail/%u
mailbox_idle_check_interval = 1 secs
"
    );
    match identity.mail_owner {
        Some((uid, gid)) => config.push_str(&format!(
            "default_internal_user = {user}
default_internal_group = {group}
default_login_user = dovenull
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
",
            user = identity.user,
            group = identity.group,
        )),
        None => config.push_str(&format!(
            "default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
service anvil {{
  chroot =
}}
",
            user = identity.user,
            group = identity.group,
        )),
    }
    let login_chroot = if identity.mail_owner.is_some() {
        ""
    } else {
        "  chroot =\n"
    };
    let imaps = match tls_port {
        Some(tls_port) => format!(
            "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {tls_port}\n    ssl = yes\n  }}\n"
        ),
        None => "  inet_listener imaps {\n    port = 0\n  }\n".to_owned(),
    };
    config.push_str(&format!(
        "service imap-login {{
{login_chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}}}
"
    ));
    if tls_port.is_some() {
        config.push_str(&format!(
            "ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
disable_plaintext_auth = yes
"
        ));
    } else {
        config.push_str("ssl = no\ndisable_plaintext_auth = no\n");
    }
    if let Some(capabilities) = options.capabilities {
        config.push_str(&format!("imap_capability = {capabilities}\n"));
    }
    config
}

/// A CA and a certificate for `localhost` signed by it, made with the openssl tool.
fn make_certificate(root: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new(require("openssl"))
            .current_dir(root)
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    fs::write(
        root.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=arfwire test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    // Dovecot reads the key as root before dropping privileges; keep it private anyway.
    fs::set_permissions(root.join("server.key"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// The path of a Dovecot tool, or a failure that says what to install.
fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // sbin is often missing from an ordinary user's PATH.
    dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{tool}` was not found. The IMAP tests need a real Dovecot server: install the \
                 Debian package dovecot-imapd (apt-get install -y dovecot-imapd), which brings \
                 dovecot, doveadm and openssl. These tests are never skipped."
            )
        })
}
