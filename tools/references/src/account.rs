//! Unix accounts, for PostgreSQL: whether we run as root, and the name, UID and GID of an account
//! (the `postgres` user, or the current one), read through the reentrant `getpw*_r` calls so that
//! NSS sources other than /etc/passwd count too.

use std::{
    ffi::{CStr, CString},
    io,
};

use anyhow::Context;

/// An account's name and IDs.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    /// Its login name, e.g. "postgres".
    pub name: String,
    /// Its user ID.
    pub uid: u32,
    /// Its primary group ID.
    pub gid: u32,
}

/// Which entry to look up.
enum Key<'a> {
    /// By login name.
    Name(&'a CStr),
    /// By user ID.
    Uid(libc::uid_t),
}

/// Whether this process runs as root (effective UID 0).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The account named `name`, or `None` if there is none.
pub(crate) fn by_name(name: &str) -> anyhow::Result<Option<Account>> {
    let c_name = CString::new(name).with_context(|| format!("bad account name {name:?}"))?;
    lookup(Key::Name(&c_name)).with_context(|| format!("cannot look up the account {name:?}"))
}

/// The account this process runs as (its effective UID), or `None` if it has no entry.
pub(crate) fn current() -> anyhow::Result<Option<Account>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    lookup(Key::Uid(uid)).with_context(|| format!("cannot look up the account of UID {uid}"))
}

/// One `getpwnam_r` or `getpwuid_r`, growing the string buffer while it is too small.
fn lookup(key: Key<'_>) -> io::Result<Option<Account>> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value (null pointers and zero IDs); it is only
        // read below after the call has filled it in.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live local of the right type, and `buf.len()` is the
        // true length of `buf`; the strings the call stores point into `buf`, which outlives
        // their use below.
        let code = unsafe {
            match key {
                Key::Name(name) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                ),
                Key::Uid(uid) => {
                    libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found)
                }
            }
        };
        if code == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if code != 0 {
            return Err(io::Error::from_raw_os_error(code));
        }
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(entry.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Ok(Some(Account {
            name,
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        }));
    }
}
