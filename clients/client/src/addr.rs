//! Reading an address a person or a config file gave: one `host:port`, or several separated by
//! commas (the servers of one service, tried in order).

/// Turns a user-given address (`host:port`, optionally with `http://`) into the URI tonic dials.
/// The error says what is wrong in one sentence, quoting the address.
pub fn endpoint_uri(text: &str) -> Result<String, String> {
    let bare = text.trim();
    let bare = bare.strip_prefix("http://").unwrap_or(bare);
    let (host, port) = bare
        .rsplit_once(':')
        .ok_or_else(|| format!("`{text}` is not a host:port address"))?;
    if host.is_empty() || port.parse::<u16>().is_err() || bare.contains('/') {
        return Err(format!("`{text}` is not a host:port address"));
    }
    Ok(format!("http://{bare}"))
}

/// The addresses in `text`: one `host:port`, or several separated by commas (spaces around them
/// ignored), each checked as [`endpoint_uri`] does. The error names the one that is wrong.
pub fn addr_list(text: &str) -> Result<Vec<String>, String> {
    let addrs: Vec<String> = text.split(',').map(|a| a.trim().to_owned()).collect();
    for addr in &addrs {
        if addr.is_empty() {
            return Err(format!("`{text}` has an empty address between its commas"));
        }
        endpoint_uri(addr)?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_list_is_comma_separated_and_each_one_is_checked() {
        assert_eq!(addr_list("localhost:1").unwrap(), ["localhost:1"]);
        assert_eq!(
            addr_list("10.0.0.1:1, http://10.0.0.2:2").unwrap(),
            ["10.0.0.1:1", "http://10.0.0.2:2"]
        );
        let bad = addr_list("a:1,b").unwrap_err();
        assert!(bad.contains("`b`"), "{bad}");
        let empty = addr_list("a:1,,b:2").unwrap_err();
        assert!(empty.contains("empty"), "{empty}");
    }

    #[test]
    fn endpoint_uris_are_http_host_port() {
        assert_eq!(
            endpoint_uri("localhost:50051").unwrap(),
            "http://localhost:50051"
        );
        assert_eq!(
            endpoint_uri("http://10.0.0.1:1").unwrap(),
            "http://10.0.0.1:1"
        );
        assert_eq!(endpoint_uri("[::1]:9").unwrap(), "http://[::1]:9");
        assert!(endpoint_uri("localhost").is_err());
        assert!(endpoint_uri(":50051").is_err());
        assert!(endpoint_uri("host:99999").is_err());
        assert!(endpoint_uri("https://host:1/path").is_err());
    }
}
