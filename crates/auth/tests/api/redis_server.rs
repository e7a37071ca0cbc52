//! A `redis-server` of a test's own, plain or TLS, for tests that need to stop the store
//! or to speak TLS to it (the shared test Redis can do neither).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::helpers::require_services;

/// A `redis-server` of a test's own on 127.0.0.1, which the test may stop (to see what
/// the app does without its store). With `tls`, it speaks TLS only, with a CA and a
/// server certificate made for it by the `openssl` CLI. Killed when dropped.
pub struct OwnRedis {
    child: Child,
    port: u16,
    tls: bool,
    /// The CA that signed the server's certificate (TLS only).
    pub ca: PathBuf,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// `None` (a skip) when `redis-server` is not installed, unless
    /// `TEST_REQUIRE_SERVICES=1`.
    pub async fn start(tls: bool) -> Option<Self> {
        if let Err(e) = Command::new("redis-server").arg("--version").output() {
            assert!(
                !require_services(),
                "TEST_REQUIRE_SERVICES=1 but redis-server cannot run: {e}"
            );
            eprintln!("skipping: redis-server cannot run ({e})");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = if tls {
            make_certificates(dir.path())
        } else {
            PathBuf::new()
        };
        // A free port: bound by the OS, released just before the server takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn(dir.path(), port, tls, &ca);
        let mut server = Self {
            child,
            port,
            tls,
            ca,
            dir,
        };
        server.wait_until_listening().await;
        Some(server)
    }

    async fn wait_until_listening(&mut self) {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("redis-server is not listening after 5 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Where its files (and, with TLS, its certificates) are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now, as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, empty (it keeps nothing on disk), as a Redis
    /// restarted after a crash; returns once it accepts connections.
    pub async fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.dir.path(), self.port, self.tls, &self.ca);
        self.wait_until_listening().await;
    }
}

/// Runs `redis-server` on `port` with its files in `dir`, logging to `redis.log` there.
fn spawn(dir: &Path, port: u16, tls: bool, ca: &Path) -> Child {
    let path = |name: &str| dir.join(name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path("redis.log"))
        .unwrap();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1"]);
    if tls {
        cmd.args(["--port", "0", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(path("server.crt"))
            .arg("--tls-key-file")
            .arg(path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "no"]);
    } else {
        cmd.arg("--port").arg(port.to_string());
    }
    cmd.args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("redis-server starts")
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.crt`) and, signed by it, a certificate for 127.0.0.1 (`server.crt`,
/// `server.key`); also an unrelated CA (`other-ca.crt`). Returns the CA's path.
fn make_certificates(dir: &Path) -> PathBuf {
    for name in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=Tobira test {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    dir.join("ca.crt")
}
