//! Rewrites `proto/contract-snapshot.txt`, the committed snapshot of Township's API contract, from
//! the `.proto` files as built. Run by hand, never by a build step:
//!
//! ```sh
//! cargo run -p township-proto --example update_contract
//! ```
//!
//! It prints every breaking change the new snapshot accepts, so that the commit that updates it
//! can say in `proto/CHANGELOG.md` what changed and why.

use std::{error::Error, fs, io, path::Path};

use township_proto::contract::{Contract, breaking_changes};

fn main() -> Result<(), Box<dyn Error>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract-snapshot.txt");
    let built = Contract::built()?;
    match fs::read_to_string(&path) {
        Ok(text) => {
            let accepted = breaking_changes(&text.parse()?, &built);
            for change in &accepted {
                println!("breaking: {change}");
            }
            println!("{} breaking change(s) accepted", accepted.len());
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => println!("no snapshot yet"),
        Err(error) => return Err(error.into()),
    }
    fs::write(&path, built.to_string())?;
    println!("wrote {}; record why in proto/CHANGELOG.md", path.display());
    Ok(())
}
