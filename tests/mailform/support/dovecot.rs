//! A real IMAP server (Debian's `dovecot-imapd`) for the IMAP proofs:
//! started once per test binary, in the foreground with a config of its
//! own in a temporary folder, on loopback only, with TLS on a test CA made
//! here. It authenticates by SASL XOAUTH2 (and OAUTHBEARER) only, through
//! Dovecot's `oauth2` passdb, which introspects each bearer token at the
//! OAuth peer (oidc-provider): active, `sub` equal to the login name, and a
//! mail scope. The mailboxes it serves are the Maildirs the SMTP peer
//! delivers into, so a message sent through SMTP can be found over IMAP.
//!
//! Two listeners: implicit TLS on 127.0.0.1, and STARTTLS on 127.0.0.2 (a
//! connection from 127.0.0.1 to itself counts as secured for Dovecot, which
//! would then offer AUTHENTICATE before TLS). When the tests run as root,
//! Dovecot's processes run as `nobody`. A watchdog stops it (SIGTERM, then
//! SIGKILL) and removes the folder when this process exits, since it reads a
//! pipe whose other end only this process holds.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::peers::Peers;

pub struct Dovecot {
    /// Implicit TLS on 127.0.0.1.
    pub imaps_port: u16,
    /// Plain IMAP offering STARTTLS, on 127.0.0.2.
    pub starttls_port: u16,
    /// Both CAs a test provider trusts: the peers' and Dovecot's.
    pub ca_file: PathBuf,
    _watchdog: Mutex<Child>,
}

/// The shared server of this test binary, started on first use (after
/// the peers, whose OAuth server it asks and whose mailboxes it serves).
pub fn dovecot(p: &Peers) -> &'static Dovecot {
    static DOVECOT: OnceLock<Dovecot> = OnceLock::new();
    DOVECOT.get_or_init(|| Dovecot::start(p).unwrap_or_else(|e| panic!("{e}")))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The user, group, uid and gid Dovecot's processes and mail run as.
fn identity() -> (String, String, u32, u32) {
    if is_root() {
        return ("nobody".into(), "nogroup".into(), 65534, 65534);
    }
    let out = |args: &[&str]| {
        String::from_utf8(Command::new("id").args(args).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    (
        out(&["-un"]),
        out(&["-gn"]),
        out(&["-u"]).parse().unwrap(),
        out(&["-g"]).parse().unwrap(),
    )
}

fn free_port(host: &str) -> Result<u16, String> {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on {host}: {e}"))
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `dovecot`: on PATH, or Debian's.
fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("dovecot").is_file() {
                return Ok(dir.join("dovecot"));
            }
        }
    }
    let debian = PathBuf::from("/usr/sbin/dovecot");
    if debian.is_file() {
        return Ok(debian);
    }
    Err("dovecot is not installed: the IMAP tests need Debian's dovecot-imapd (apt-get install dovecot-imapd; .ci/run installs it)".into())
}

impl Dovecot {
    fn start(p: &Peers) -> Result<Dovecot, String> {
        let bin = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("mailform-dovecot-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        chmod(&dir, 0o711);
        let (issuer, ca_pem) = super::tls::ca("mailform Dovecot test CA");
        let (cert, key) = super::tls::server(&issuer, &["127.0.0.1", "127.0.0.2", "localhost"]);
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        chmod(&dir.join("server.key"), 0o600);
        // What the auth process (Dovecot's user) trusts at the OAuth peer.
        let peers_ca = std::fs::read_to_string(&p.ca_file).unwrap();
        std::fs::write(dir.join("idp-ca.pem"), &peers_ca).unwrap();
        chmod(&dir.join("idp-ca.pem"), 0o644);
        // What a test provider trusts: the OAuth peer's CA and this one.
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, format!("{peers_ca}{ca_pem}")).unwrap();
        chmod(&ca_file, 0o644);
        // The Maildirs the SMTP peer delivers into, open to Dovecot's user.
        let mail = p.mailbox.join("maildir");
        std::fs::create_dir_all(&mail).unwrap();
        for open in [p.mailbox.parent().unwrap(), &p.mailbox] {
            chmod(open, 0o711);
        }
        chmod(&mail, 0o777);
        std::fs::create_dir_all(dir.join("run")).unwrap();

        let imaps_port = free_port("127.0.0.1")?;
        let starttls_port = free_port("127.0.0.2")?;
        let conf = write_configs(p, &dir, &mail, imaps_port, starttls_port);
        let mut server = Command::new(&bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run dovecot: {e}"))?;
        // Stops the server when this process exits: `cat` ends when the
        // pipe's write end (held only here) closes.
        let stop = format!(
            "cat >/dev/null; kill -TERM {pid} 2>/dev/null; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 {pid} 2>/dev/null || break; sleep 1; done; kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'",
            pid = server.id(),
            dir = dir.display()
        );
        let watchdog = Command::new("/bin/sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the Dovecot watchdog: {e}"))?;
        // Ready once the STARTTLS listener greets.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.try_wait() {
                let mut err = String::new();
                let _ = server.stderr.take().map(|mut e| e.read_to_string(&mut err));
                return Err(format!(
                    "dovecot exited ({status}):\n{err}\n{}",
                    std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
                ));
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.2", starttls_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"* OK" {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dovecot did not greet within 20 s:\n{}",
                    std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Dovecot {
            imaps_port,
            starttls_port,
            ca_file,
            _watchdog: Mutex::new(watchdog),
        })
    }
}

/// Dovecot's config and its `oauth2` passdb's, in `dir`; the config's path.
fn write_configs(
    p: &Peers,
    dir: &Path,
    mail: &Path,
    imaps_port: u16,
    starttls_port: u16,
) -> PathBuf {
    let (user, group, uid, gid) = identity();
    let secret = p.clients.introspector.client_secret.as_deref().unwrap();
    let idp = p.issuer.trim_start_matches("https://");
    std::fs::write(
        dir.join("oauth2.conf"),
        format!(
            "introspection_url = https://{}:{secret}@{idp}/token/introspection\n\
             introspection_mode = post\n\
             username_attribute = sub\n\
             active_attribute = active\n\
             active_value = true\n\
             tls_ca_cert_file = {}\n\
             timeout_msecs = 5000\n\
             pass_attrs = allow_nets=%{{if;%{{oauth2:scope}};~;(^|[^[\\:graph\\:]])(mail|https\\://mail[.]google[.]com/)([^[\\:graph\\:]]|$);0.0.0.0/0,\\:\\:/0;no-mail-scope}}\n",
            p.clients.introspector.client_id,
            dir.join("idp-ca.pem").display(),
        ),
    )
    .unwrap();
    chmod(&dir.join("oauth2.conf"), 0o644);
    let conf = dir.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols = imap\n\
             listen = 127.0.0.1\n\
             base_dir = {run}\n\
             state_dir = {run}\n\
             log_path = {log}\n\
             default_internal_user = {user}\n\
             default_internal_group = {group}\n\
             default_login_user = {user}\n\
             auth_mechanisms = xoauth2 oauthbearer\n\
             disable_plaintext_auth = yes\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             ssl = required\n\
             ssl_cert = <{dir}/server.pem\n\
             ssl_key = <{dir}/server.key\n\
             passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {dir}/oauth2.conf\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={mail}/%Lu\n}}\n\
             mail_location = maildir:~\n\
             first_valid_uid = 1\n\
             service anvil {{\n  chroot =\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.2\n    port = {starttls_port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n    ssl = yes\n  }}\n}}\n",
            run = dir.join("run").display(),
            log = dir.join("dovecot.log").display(),
            dir = dir.display(),
            mail = mail.display(),
        ),
    )
    .unwrap();
    conf
}
