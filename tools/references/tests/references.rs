//! The claims of township-references, against the real etcd, Redis and PostgreSQL: each starts,
//! answers plain requests (HTTP, inline RESP, psql), keeps the durability it promises, and once
//! stopped or dropped leaves no process (by PID) and no directory behind. A reference that is not
//! installed is skipped with a message naming its package, unless the test command requires it.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use township_references::{
    ETCD_PACKAGE, Etcd, EtcdCluster, POSTGRES_PACKAGE, Postgres, REDIS_PACKAGE, Redis,
    RedisDurability, etcd_version, postgres_version, redis_version,
};

/// How long a test's own request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The installed version, or `None` after printing why the test is skipped. Where the test
/// command installed the references (`TOWNSHIP_REFERENCES_REQUIRED` set), a missing one fails
/// the test instead, so that CI cannot pass by skipping.
fn installed(name: &str, version: anyhow::Result<Option<String>>, package: &str) -> Option<String> {
    match version.expect("the version check itself works") {
        Some(version) => Some(version),
        None if std::env::var_os("TOWNSHIP_REFERENCES_REQUIRED").is_some() => {
            panic!("{name} is required but not installed (apt-get install {package})")
        }
        None => {
            eprintln!("skipped: {name} is not installed (apt-get install {package})");
            None
        }
    }
}

/// Whether no process has `pid`: /proc has no entry and `kill(pid, 0)` fails with ESRCH.
fn is_gone(pid: u32) -> bool {
    let raw = libc::pid_t::try_from(pid).expect("PIDs fit pid_t");
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    !alive && !Path::new(&format!("/proc/{pid}")).exists()
}

/// The PIDs whose parent is `pid`, from /proc/*/stat.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc is readable").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process may end while we look; it is then no child anyway.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (comm) STATE PPID ...": the command may hold spaces, so read after its ')'.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(pid) {
            children.push(child);
        }
    }
    children
}

/// A whole HTTP/1.1 GET reply (headers and body) from `url` + `path`, with `Connection: close`.
fn http_get(url: &str, path: &str) -> String {
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .expect("an http URL")
        .parse()
        .expect("URL holds IP:PORT");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connects");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply read");
    reply
}

/// A connection to Redis that sends inline commands and reads RESP replies.
struct RedisConnection(BufReader<TcpStream>);

impl RedisConnection {
    fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connects");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        Self(BufReader::new(stream))
    }

    /// Sends `line` as an inline command; the reply as text (arrays joined by spaces, nil as
    /// "(nil)", errors with their '-').
    fn command(&mut self, line: &str) -> String {
        write!(self.0.get_mut(), "{line}\r\n").expect("command sent");
        self.reply()
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("reply line");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | ":" => rest.to_owned(),
            "-" => line.to_owned(),
            "$" if rest == "-1" => "(nil)".to_owned(),
            "$" => {
                let len: usize = rest.parse().expect("bulk length");
                let mut bulk = vec![0; len + 2];
                self.0.read_exact(&mut bulk).expect("bulk body");
                String::from_utf8_lossy(&bulk[..len]).into_owned()
            }
            "*" => {
                let count: usize = rest.parse().expect("array length");
                (0..count)
                    .map(|_| self.reply())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            other => panic!("unexpected RESP reply type {other:?} in {line:?}"),
        }
    }
}

/// `psql -At -c sql` against `postgres` as its superuser; the trimmed output.
fn psql(postgres: &Postgres, sql: &str) -> String {
    let output = Command::new(postgres.program("psql"))
        .args(["-h", postgres.host(), "-p", &postgres.port().to_string()])
        .args(["-U", postgres.user(), "-d", "postgres", "-At", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql -c {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn installed_versions_are_dotted_numbers() {
    let checks = [
        ("etcd", etcd_version(), ETCD_PACKAGE),
        ("redis-server", redis_version(), REDIS_PACKAGE),
        ("PostgreSQL", postgres_version(), POSTGRES_PACKAGE),
    ];
    for (name, version, package) in checks {
        let Some(version) = installed(name, version, package) else {
            continue;
        };
        assert!(
            version.split('.').count() >= 2
                && version.split('.').all(|part| part.parse::<u32>().is_ok()),
            "{name}'s version {version:?} is not dotted numbers"
        );
    }
}

#[test]
fn etcd_answers_health_and_version_on_one_core_and_stop_ends_its_pid_and_removes_its_data() {
    let Some(version) = installed("etcd", etcd_version(), ETCD_PACKAGE) else {
        return;
    };
    let etcd = Etcd::start().expect("etcd starts");
    let (pid, dir) = (etcd.pid(), etcd.dir().to_owned());
    assert!(etcd.client_url().starts_with("http://127.0.0.1:"));
    assert!(
        dir.join("data").is_dir(),
        "its data directory is in its dir"
    );

    let health = http_get(etcd.client_url(), "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"health\":\"true\""), "{health}");
    let about = http_get(etcd.client_url(), "/version");
    assert!(
        about.contains(&format!("\"etcdserver\":\"{version}\"")),
        "{about}"
    );
    let environment = fs::read(format!("/proc/{pid}/environ")).expect("its environment");
    assert!(
        environment
            .split(|&byte| byte == 0)
            .any(|var| var == b"GOMAXPROCS=1"),
        "etcd runs with GOMAXPROCS=1"
    );

    etcd.stop().expect("etcd stops");
    assert!(is_gone(pid), "etcd's PID {pid} is gone");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn an_etcd_cluster_serves_without_one_member_not_without_a_majority_and_a_member_rejoins() {
    if installed("etcd", etcd_version(), ETCD_PACKAGE).is_none() {
        return;
    }
    let mut cluster = EtcdCluster::start(3).expect("three members start");
    let urls: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| format!("http://{e}"))
        .collect();
    let healthy = |i: usize| http_get(&urls[i], "/health").contains("\"health\":\"true\"");
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
    assert!((0..3).all(healthy), "every member healthy once started");

    cluster.kill(0).expect("member 0 killed");
    assert!(is_gone(pids[0]) && cluster.pid(0).is_none());
    // Two of three are a majority: healthy at once, or within an election timeout when member 0
    // was the raft leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(healthy(1) && healthy(2)) {
        assert!(Instant::now() < deadline, "two of three are a majority");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.kill(1).expect("member 1 killed");
    // Member 2 alone loses its leader within an election timeout (1 s by default): the three
    // are one cluster.
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthy(2) {
        assert!(Instant::now() < deadline, "one of three is no quorum");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster
        .start_again(1)
        .expect("member 1 rejoins on its data");
    assert!(healthy(1) && healthy(2), "a majority again");
    cluster
        .start_again(0)
        .expect("member 0 rejoins on its data");
    assert!(healthy(0));

    let dir = cluster.dir().to_owned();
    let running: Vec<u32> = (0..3).map(|i| cluster.pid(i).expect("running")).collect();
    drop(cluster);
    for pid in running {
        assert!(is_gone(pid), "member PID {pid} is gone");
    }
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn redis_in_memory_answers_set_and_get_keeps_no_file_and_stop_ends_its_pid_and_removes_its_dir() {
    if installed("redis-server", redis_version(), REDIS_PACKAGE).is_none() {
        return;
    }
    let redis = Redis::start(RedisDurability::InMemory).expect("Redis starts");
    let (pid, dir) = (redis.pid(), redis.dir().to_owned());
    assert_eq!(redis.durability(), RedisDurability::InMemory);
    assert_eq!(redis.url(), format!("redis://{}/", redis.addr()));

    let mut connection = RedisConnection::open(redis.addr());
    assert_eq!(connection.command("SET township hello"), "OK");
    assert_eq!(connection.command("GET township"), "hello");
    assert_eq!(connection.command("CONFIG GET appendonly"), "appendonly no");
    assert_eq!(connection.command("CONFIG GET save"), "save ");
    assert!(!dir.join("appendonlydir").exists(), "no append-only file");
    drop(connection);

    redis.stop().expect("Redis stops");
    assert!(is_gone(pid), "Redis's PID {pid} is gone");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn redis_every_write_fsyncs_always_into_its_dir() {
    if installed("redis-server", redis_version(), REDIS_PACKAGE).is_none() {
        return;
    }
    let redis = Redis::start(RedisDurability::EveryWrite).expect("Redis starts");
    let mut connection = RedisConnection::open(redis.addr());
    assert_eq!(
        connection.command("CONFIG GET appendonly"),
        "appendonly yes"
    );
    assert_eq!(
        connection.command("CONFIG GET appendfsync"),
        "appendfsync always"
    );
    assert_eq!(connection.command("CONFIG GET save"), "save ");
    assert_eq!(connection.command("SET township durable"), "OK");
    assert!(
        redis.dir().join("appendonlydir").is_dir(),
        "the append-only file is in its dir"
    );
    drop(connection);
    redis.stop().expect("Redis stops");
}

#[test]
fn dropping_redis_kills_its_pid_and_removes_its_dir() {
    if installed("redis-server", redis_version(), REDIS_PACKAGE).is_none() {
        return;
    }
    let redis = Redis::start(RedisDurability::InMemory).expect("Redis starts");
    let (pid, dir) = (redis.pid(), redis.dir().to_owned());
    drop(redis);
    assert!(is_gone(pid), "Redis's PID {pid} is gone");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn stopping_a_redis_that_died_on_its_own_says_so_and_still_removes_its_dir() {
    if installed("redis-server", redis_version(), REDIS_PACKAGE).is_none() {
        return;
    }
    let redis = Redis::start(RedisDurability::InMemory).expect("Redis starts");
    let (pid, dir) = (redis.pid(), redis.dir().to_owned());
    let raw = libc::pid_t::try_from(pid).expect("PIDs fit pid_t");
    // SAFETY: kill has no memory-safety preconditions; the PID is Redis's, not yet reaped.
    assert_eq!(unsafe { libc::kill(raw, libc::SIGKILL) }, 0);
    // Wait (bounded) until the kill has landed and the whole process has exited: waitid with
    // WNOWAIT sees it waitable without reaping it, so stop() still finds the exit to report.
    // (/proc/PID/stat shows "Z" as soon as the main thread dies, while Redis's other threads may
    // still be exiting and waitpid still says "running".)
    let began = Instant::now();
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value, and waitid only writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; the PID is our unreaped child.
        let polled = unsafe {
            libc::waitid(
                libc::P_PID,
                libc::id_t::from(pid),
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        assert_eq!(polled, 0, "waitid on Redis's PID");
        // SAFETY: waitid filled `info`; si_pid is 0 while the child is not yet waitable.
        if unsafe { info.si_pid() } != 0 {
            break;
        }
        assert!(began.elapsed() < TIMEOUT, "Redis did not die of SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    let error = redis.stop().expect_err("stop reports the death");
    let message = format!("{error:#}");
    assert!(message.contains("already exited"), "{message}");
    assert!(
        message.contains("redis.log"),
        "the error quotes the log: {message}"
    );
    assert!(is_gone(pid), "Redis's PID {pid} is reaped");
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn postgres_answers_psql_with_fsync_on_and_stop_ends_the_postmaster_and_its_children() {
    if installed("PostgreSQL", postgres_version(), POSTGRES_PACKAGE).is_none() {
        return;
    }
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let (pid, dir) = (postgres.pid(), postgres.dir().to_owned());
    assert_eq!(postgres.host(), "127.0.0.1");
    assert_eq!(
        postgres.url(),
        format!(
            "postgres://{}@127.0.0.1:{}/postgres",
            postgres.user(),
            postgres.port()
        )
    );
    assert!(
        postgres.program("pgbench").is_file(),
        "pgbench is beside it"
    );

    assert_eq!(psql(&postgres, "select 1"), "1");
    assert_eq!(psql(&postgres, "show fsync"), "on");
    assert_eq!(psql(&postgres, "show synchronous_commit"), "on");
    assert_eq!(psql(&postgres, "show server_encoding"), "UTF8");
    let data: PathBuf = psql(&postgres, "show data_directory").into();
    assert!(
        data.starts_with(&dir),
        "its cluster is in {}",
        dir.display()
    );

    let children = children_of(pid);
    assert!(!children.is_empty(), "the postmaster has its helpers");
    postgres.stop().expect("PostgreSQL stops");
    assert!(is_gone(pid), "the postmaster's PID {pid} is gone");
    for child in children {
        assert!(is_gone(child), "its child {child} is gone");
    }
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn an_immediate_restart_keeps_every_committed_row_on_the_same_port_with_a_new_postmaster() {
    if installed("PostgreSQL", postgres_version(), POSTGRES_PACKAGE).is_none() {
        return;
    }
    let mut postgres = Postgres::start().expect("PostgreSQL starts");
    let (pid, port) = (postgres.pid(), postgres.port());
    psql(
        &postgres,
        "create table kept (n int); insert into kept select generate_series(1, 1000)",
    );
    let children = children_of(pid);
    postgres.restart_immediately().expect("PostgreSQL restarts");
    assert!(is_gone(pid), "the old postmaster's PID {pid} is gone");
    for child in children {
        assert!(is_gone(child), "its child {child} is gone");
    }
    assert_ne!(postgres.pid(), pid);
    assert_eq!(postgres.port(), port);
    assert_eq!(psql(&postgres, "select count(*) from kept"), "1000");
    let log = std::fs::read_to_string(postgres.log_path()).unwrap();
    assert!(
        log.contains("not properly shut down") || log.contains("automatic recovery"),
        "the new postmaster recovered from the WAL, as after a crash:\n{log}"
    );
    postgres.stop().expect("PostgreSQL stops");
}

#[test]
fn dropping_postgres_ends_the_postmaster_and_its_children_and_removes_its_dir() {
    if installed("PostgreSQL", postgres_version(), POSTGRES_PACKAGE).is_none() {
        return;
    }
    let postgres = Postgres::start().expect("PostgreSQL starts");
    let (pid, dir) = (postgres.pid(), postgres.dir().to_owned());
    let children = children_of(pid);
    assert!(!children.is_empty(), "the postmaster has its helpers");
    drop(postgres);
    assert!(is_gone(pid), "the postmaster's PID {pid} is gone");
    for child in children {
        assert!(is_gone(child), "its child {child} is gone");
    }
    assert!(!dir.exists(), "{} is removed", dir.display());
}
