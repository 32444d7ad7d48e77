//! Compiles the subset of etcd's v3 protos in `proto/etcd/` with protox (pure Rust, no system
//! `protoc`: the reason this crate exists rather than the `etcd-client` crate), client side only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: &[&str] = &["etcd/etcdserverpb/rpc.proto", "etcd/mvccpb/kv.proto"];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
