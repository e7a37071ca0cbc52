//! The ephemeral store's contract, run on every implementation.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use time::Duration;
use tobira_auth::{Clock, Config};
use tokio::sync::Barrier;

use crate::helpers::ephemeral_stores;

#[tokio::test]
async fn values_expire_by_the_app_clock_not_the_wall_clock() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let expires = clock.now() + Duration::seconds(60);
        store.put("code:a", b"payload", expires).await.unwrap();
        assert_eq!(
            store.get("code:a").await.unwrap().as_deref(),
            Some(&b"payload"[..]),
            "{name}"
        );
        clock.advance(Duration::seconds(59));
        assert!(
            store.get("code:a").await.unwrap().is_some(),
            "{name}: expired early"
        );
        clock.advance(Duration::seconds(1));
        assert_eq!(
            store.get("code:a").await.unwrap(),
            None,
            "{name}: alive at expires_at"
        );
        assert_eq!(store.take("code:a").await.unwrap(), None, "{name}");
        assert_eq!(store.get("never-written").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn put_replaces_and_delete_removes() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let later = clock.now() + Duration::minutes(5);
        store.put("k", b"one", later).await.unwrap();
        store.put("k", b"two", later).await.unwrap();
        assert_eq!(
            store.get("k").await.unwrap().as_deref(),
            Some(&b"two"[..]),
            "{name}"
        );
        // Binary values survive the round trip untouched, the empty value included.
        let bytes: Vec<u8> = (0..=255).collect();
        store.put("bin", &bytes, later).await.unwrap();
        assert_eq!(store.get("bin").await.unwrap(), Some(bytes), "{name}");
        store.put("empty", b"", later).await.unwrap();
        assert_eq!(
            store.get("empty").await.unwrap(),
            Some(Vec::new()),
            "{name}"
        );
        store.delete("k").await.unwrap();
        store.delete("k").await.unwrap();
        assert_eq!(store.get("k").await.unwrap(), None, "{name}");
        store.ping().await.unwrap();
    }
}

// Four worker threads, and every task waits at a barrier: the takes really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_is_single_use_even_under_concurrency() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        store
            .put("code:x", b"v", clock.now() + Duration::seconds(60))
            .await
            .unwrap();
        let start = Arc::new(Barrier::new(16));
        let takers: Vec<_> = (0..16)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.take("code:x").await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in takers {
            if t.await.unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(
            winners, 1,
            "{name}: a single-use value was taken {winners} times"
        );
        assert_eq!(store.get("code:x").await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn counters_count_within_a_fixed_window_and_restart_after_it() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let window = Duration::minutes(15);
        let opened = clock.now();
        let first = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(first.count, 1, "{name}");
        assert_eq!(first.expires_at, opened + window, "{name}");
        clock.advance(Duration::minutes(10));
        let second = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(second.count, 2, "{name}");
        assert_eq!(
            second.expires_at,
            opened + window,
            "{name}: later hits must not extend the window"
        );
        clock.advance(Duration::minutes(5));
        let restarted = store.incr("fail:ip", window).await.unwrap();
        assert_eq!(restarted.count, 1, "{name}");
        assert_eq!(restarted.expires_at, clock.now() + window, "{name}");
        // Counters are independent per key.
        assert_eq!(
            store.incr("fail:other", window).await.unwrap().count,
            1,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_are_never_lost() {
    let clock = Clock::manual_at_now();
    for (name, store, _guard) in ephemeral_stores(&clock).await {
        let start = Arc::new(Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store
                        .incr("burst", Duration::minutes(1))
                        .await
                        .unwrap()
                        .count
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=50).collect::<Vec<u64>>(), "{name}");
    }
}

#[tokio::test]
async fn redis_prefixes_keep_deployments_apart() {
    let clock = Clock::manual_at_now();
    let (Some(a), Some(b)) = (
        crate::helpers::TestRedis::new().await,
        crate::helpers::TestRedis::new().await,
    ) else {
        return;
    };
    let (store_a, store_b) = (a.store(&clock).await, b.store(&clock).await);
    store_a
        .put("same-key", b"a", clock.now() + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(store_b.get("same-key").await.unwrap(), None);
    assert_eq!(
        store_a.get("same-key").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
}

/// A `redis-server` of this test's own, speaking TLS only on 127.0.0.1, with a CA and
/// a server certificate made for it by the `openssl` CLI. Killed when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// `None` (a skip) when `redis-server` is not installed, unless
    /// `TEST_REQUIRE_SERVICES=1`.
    async fn start() -> Option<Self> {
        if let Err(e) = Command::new("redis-server").arg("--version").output() {
            assert!(
                !require_services(),
                "TEST_REQUIRE_SERVICES=1 but redis-server cannot run: {e}"
            );
            eprintln!("skipping the Redis TLS test: redis-server cannot run ({e})");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = make_certificates(dir.path());
        // A free port: bound by the OS, released just before the server takes it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let path = |name: &str| dir.path().join(name);
        let log = std::fs::File::create(path("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--tls-port"])
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(path("server.crt"))
            .arg("--tls-key-file")
            .arg(path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server starts");
        let mut server = Self {
            child,
            port,
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

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_services() -> bool {
    std::env::var("TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
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

/// The app's configuration for this Redis: a `rediss://` URL and, maybe, a CA file.
fn tls_config(url: &str, ca: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.ephemeral.url = tobira_auth::config::Secret::new(url);
    config.ephemeral.key_prefix = format!("tobira-test:{}:", uuid::Uuid::new_v4().simple());
    config.ephemeral.tls_ca_file = ca.map(|p| p.display().to_string()).unwrap_or_default();
    config
}

#[tokio::test]
async fn rediss_urls_speak_tls_and_trust_the_configured_ca_only() {
    let Some(redis) = TlsRedis::start().await else {
        return;
    };
    let clock = Clock::manual_at_now();
    let url = redis.url();

    // With the CA that signed the server's certificate: a working store.
    let config = tls_config(&url, Some(&redis.ca));
    let store = tobira_auth::startup::open_ephemeral(&config, &clock)
        .await
        .expect("connects over TLS with the configured CA");
    let later = clock.now() + Duration::minutes(1);
    store.put("code:tls", b"over tls", later).await.unwrap();
    assert_eq!(
        store.get("code:tls").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(
        store.take("code:tls").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    assert_eq!(store.take("code:tls").await.unwrap(), None);
    assert_eq!(
        store.incr("n", Duration::minutes(1)).await.unwrap().count,
        1
    );
    store.ping().await.unwrap();

    // The system roots do not know a private CA: refused, and the error says why and
    // what to set.
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, None), &clock)
        .await
        .expect_err("an unknown issuer is refused")
        .to_string();
    assert!(
        err.contains("certificate") && err.contains("ephemeral.tls_ca_file"),
        "{err}"
    );
    assert!(err.contains(&url), "the target is named: {err}");

    // A CA file replaces the system roots: another CA does not vouch for this server.
    let other = redis.dir.path().join("other-ca.crt");
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, Some(&other)), &clock)
        .await
        .expect_err("a certificate from another CA is refused")
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    // A CA file that is not one is named as such, not as a TLS failure later.
    let junk = redis.dir.path().join("server.csr");
    let err = tobira_auth::startup::open_ephemeral(&tls_config(&url, Some(&junk)), &clock)
        .await
        .expect_err("a file without a certificate is refused")
        .to_string();
    assert!(
        err.contains("ephemeral.tls_ca_file") && err.contains("no PEM certificate"),
        "{err}"
    );
    // Plain redis:// to the TLS port does not get through either.
    let plain = url.replace("rediss://", "redis://");
    assert!(
        tobira_auth::startup::open_ephemeral(&tls_config(&plain, None), &clock)
            .await
            .is_err()
    );
    drop(store);
}

#[test]
fn a_ca_file_without_a_rediss_url_is_a_configuration_error() {
    let env = [
        (
            "TOBIRA_EPHEMERAL__URL".to_owned(),
            "redis://127.0.0.1:6379".to_owned(),
        ),
        (
            "TOBIRA_EPHEMERAL__TLS_CA_FILE".to_owned(),
            "/etc/ssl/ca.pem".to_owned(),
        ),
    ];
    let err = Config::from_layers(None, &env).unwrap_err().to_string();
    assert!(err.contains("ephemeral.tls_ca_file"), "{err}");
    let env = [
        (
            "TOBIRA_EPHEMERAL__URL".to_owned(),
            "rediss://redis.internal:6380".to_owned(),
        ),
        (
            "TOBIRA_EPHEMERAL__TLS_CA_FILE".to_owned(),
            "/etc/ssl/ca.pem".to_owned(),
        ),
    ];
    let config = Config::from_layers(None, &env).unwrap();
    assert_eq!(config.ephemeral.tls_ca_file, "/etc/ssl/ca.pem");
}
