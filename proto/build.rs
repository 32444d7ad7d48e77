//! Compiles every `.proto` under `township/` with protox (pure Rust, no system `protoc`), generates the
//! tonic clients and servers, and writes the encoded descriptor set for server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Every Township API, one file per service and version.
const PROTOS: &[&str] = &[
    "township/time/v1/time.proto",
    "township/lock/v1/lock.proto",
    "township/bank/v1/bank.proto",
    "township/phonebook/v1/phonebook.proto",
    "township/doctor/v1/doctor.proto",
    "township/chat/v1/chat.proto",
];

/// Standard messages that are served by reflection (so grpcurl can print error details) but have
/// no generated Rust code here: tonic-types already provides them.
const REFLECTION_ONLY: &[&str] = &["google/rpc/error_details.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS.iter().chain(REFLECTION_ONLY) {
        println!("cargo:rerun-if-changed={proto}");
    }
    let all = protox::compile(PROTOS.iter().chain(REFLECTION_ONLY), ["."])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("township_descriptor.bin"), all.encode_to_vec())?;
    let fds = protox::compile(PROTOS, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
