//! Reading an address a person or a config file gave.

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

#[cfg(test)]
mod tests {
    use super::*;

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
