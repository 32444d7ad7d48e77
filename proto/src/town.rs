//! The town's well-known addresses: for each service, its default port and the environment
//! variable a client reads its address from. The one definition that every server's default
//! `--listen`, every client's default address and `township up` use.

/// How a Township service is found when nobody says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// Its short name: `time`, `doctor`, ... (also its data directory's name).
    pub name: &'static str,
    /// The gRPC port it listens on by default (on 127.0.0.1).
    pub port: u16,
    /// `127.0.0.1:<port>`: where a client looks when given no address.
    pub default_addr: &'static str,
    /// The environment variable with which a client (and a server that calls it) is told its
    /// address, e.g. `TOWNSHIP_TIME_ADDR`.
    pub addr_env: &'static str,
}

/// Writes each port once: the address is made from the same literal.
macro_rules! service {
    ($name:literal, $port:literal, $env:literal) => {
        Service {
            name: $name,
            port: $port,
            default_addr: concat!("127.0.0.1:", $port),
            addr_env: $env,
        }
    };
}

/// The time service.
pub const TIME: Service = service!("time", 50051, "TOWNSHIP_TIME_ADDR");
/// The doctor.
pub const DOCTOR: Service = service!("doctor", 50052, "TOWNSHIP_DOCTOR_ADDR");
/// The chat.
pub const CHAT: Service = service!("chat", 50053, "TOWNSHIP_CHAT_ADDR");
/// The phone book.
pub const PHONEBOOK: Service = service!("phonebook", 50054, "TOWNSHIP_PHONEBOOK_ADDR");
/// The bank.
pub const BANK: Service = service!("bank", 50055, "TOWNSHIP_BANK_ADDR");
/// The lock service.
pub const LOCK: Service = service!("lock", 50056, "TOWNSHIP_LOCK_ADDR");

/// Every service, by port.
pub const ALL: [Service; 6] = [TIME, DOCTOR, CHAT, PHONEBOOK, BANK, LOCK];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_service_has_its_own_port_and_an_address_on_it() {
        for (i, service) in ALL.iter().enumerate() {
            assert_eq!(service.default_addr, format!("127.0.0.1:{}", service.port));
            assert!(service.addr_env.starts_with("TOWNSHIP_"));
            assert!(ALL[i + 1..].iter().all(|other| other.port != service.port));
        }
    }
}
