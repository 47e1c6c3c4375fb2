//! A real PostgreSQL server (Debian's `postgresql` package) for the state
//! backend's tests: `initdb` into a temporary folder, as an unprivileged user
//! when the tests run as root (initdb refuses root), listening on 127.0.0.1
//! and a free port only, with TLS on a test CA made here. Started once per
//! test binary, on first use; a watchdog stops it (`pg_ctl stop -m
//! immediate`) and removes the folder when the binary exits, since it reads
//! a pipe whose other end only this process holds.
//!
//! Each test gets a schema of its own (`state.schema`), so tests share the
//! server but never each other's state or lock.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The superuser's password (this throwaway server's only).
const ADMIN_PASSWORD: &str = "admin-pw-3f9c";

pub struct Pg {
    pub port: u16,
    /// The CA that signed the server's certificate (for 127.0.0.1 and localhost).
    pub ca_file: PathBuf,
    /// A CA that signed nothing the server shows.
    pub other_ca_file: PathBuf,
    psql: PathBuf,
    password: String,
    _watchdog: Mutex<Child>,
}

/// The state store mailform makes of `[state] backend = "postgres"` with
/// this URL and schema (state name "default").
pub fn store(url: &str, schema: &str) -> mailform::store::PgStore {
    store_trusting(url, schema, None)
}

/// [`store`] with `state.ca_file`.
pub fn store_trusting(
    url: &str,
    schema: &str,
    ca_file: Option<PathBuf>,
) -> mailform::store::PgStore {
    mailform::store::PgStore::new(&mailform::config::model::PostgresState {
        url: mailform::config::model::UrlSource::Literal(mailform::secret::Secret::new(url)),
        name: "default".into(),
        schema: schema.into(),
        ca_file,
    })
    .unwrap()
}

/// The shared server of this test binary, started on first use.
pub fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| Pg::start().unwrap_or_else(|e| panic!("{e}")))
}

/// The folder with `initdb`, `pg_ctl` and `psql`: on PATH, or Debian's.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "the PostgreSQL tests need a PostgreSQL server (initdb, pg_ctl): install Debian's postgresql package (apt-get install postgresql), as .ci/run does".to_string()
    })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The unprivileged user the server runs as when the tests are root.
fn server_user() -> Option<&'static str> {
    if !is_root() {
        return None;
    }
    ["postgres", "nobody"].into_iter().find(|u| {
        Command::new("id")
            .arg("-u")
            .arg(u)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `program` as the server's user.
fn as_server(program: &Path) -> Command {
    match server_user() {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn chown_to_server(path: &Path) {
    if let Some(user) = server_user() {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(user)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {user} {}", path.display());
    }
}

impl Pg {
    fn start() -> Result<Pg, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("mailform-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let data = dir.join("data");
        // Certificates: the server's, for 127.0.0.1 and localhost.
        let (issuer, ca_pem) = super::tls::ca("mailform PostgreSQL test CA");
        let (_, other_pem) = super::tls::ca("a CA nobody uses");
        let (server_cert, server_key) = super::tls::server(&issuer, &["localhost", "127.0.0.1"]);
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("server.crt"), server_cert).unwrap();
        std::fs::write(tls.join("server.key"), server_key).unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                tls.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let other_ca_file = dir.join("other-ca.pem");
        std::fs::write(&other_ca_file, &other_pem).unwrap();
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, ADMIN_PASSWORD).unwrap();
        chown_to_server(&dir);

        let out = as_server(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "admin",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off -c max_connections=200",
            dir.display(),
            tls.join("server.crt").display(),
            tls.join("server.key").display()
        );
        let log = dir.join("server.log");
        let out = as_server(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "PostgreSQL did not start:\n{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        // Stops the server when this process exits: `cat` ends when the
        // pipe's write end (held only here) closes.
        let stop = format!(
            "cat >/dev/null; '{}' -D '{}' stop -m immediate >/dev/null 2>&1; rm -rf '{}'",
            bin.join("pg_ctl").display(),
            data.display(),
            dir.display()
        );
        let watchdog = as_server(Path::new("/bin/sh"))
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the PostgreSQL watchdog: {e}"))?;
        let psql = if bin.join("psql").is_file() {
            bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        Ok(Pg {
            port,
            ca_file,
            other_ca_file,
            psql,
            password: ADMIN_PASSWORD.to_string(),
            _watchdog: Mutex::new(watchdog),
        })
    }

    /// Runs `sql` as the superuser in `db`; its output (unaligned, tuples only).
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new(&self.psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
            .env("PGPASSWORD", ADMIN_PASSWORD)
            .env("PGSSLMODE", "disable")
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql failed on {sql}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// The superuser's URL for `db` with `sslmode`.
    pub fn admin_url(&self, db: &str, sslmode: &str) -> String {
        format!(
            "postgres://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/{db}?sslmode={sslmode}",
            self.port
        )
    }

    pub fn admin_password(&self) -> &str {
        &self.password
    }

    /// A fresh schema name for one test (unique in this server's life).
    #[allow(clippy::unused_self)] // reason: names are the server's to hand out
    pub fn schema(&self) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A login role with `password` and nothing else (no superuser, no
    /// CREATE on any database); created once.
    pub fn role(&self, name: &str, password: &str) {
        self.sql(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN CREATE ROLE {name} LOGIN PASSWORD '{password}'; END IF; END $$; REVOKE CREATE ON DATABASE postgres FROM PUBLIC; REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        ));
    }
}
