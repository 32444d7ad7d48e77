//! A CSV import, from the file's bytes to what the phone book stores: the file read as `township
//! phonebook import` reads it (csv, a header row, rows of any length, columns found by name),
//! each row as an AddEntry request checked by the service (`NewEntry::parse`, libphonenumber
//! inside), and every accepted entry written out as `township phonebook export` writes its
//! number (`+E164 ext. N`) and read back to the same entry.
//!
//! The CLI is a binary crate, so its few lines that pick the columns are mirrored here; the
//! service's parsing, the part any client reaches, is linked as it is.
//!
//! The service catches a panic of libphonenumber and answers INVALID_ARGUMENT, so this target
//! lets such panics unwind to that catch (the default panic hook prints each, to be reported);
//! any other panic still aborts the run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use township_phonebook::{
    Region,
    types::{Label, Name, NewEntry, Number},
};
use township_proto::phonebook::v1::AddEntryRequest;

fuzz_target!(
    init: {
        // libfuzzer-sys aborts on any panic, even one caught; the service catches
        // libphonenumber's, so only uncaught ones may end the run (libfuzzer-sys still aborts
        // on a panic that leaves the target).
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(data);
        let Ok(header) = reader.byte_headers() else {
            return;
        };
        let headers: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let find = |name: &str| headers.iter().position(|h| h == name);
        let (Some(name), Some(number)) = (find("name"), find("number")) else {
            return;
        };
        let label = find("label");
        let regions: [Region; 2] = ["GB".parse().unwrap(), "US".parse().unwrap()];
        let mut record = csv::ByteRecord::new();
        let mut rows = 0;
        while rows < 64 && matches!(reader.read_byte_record(&mut record), Ok(true)) {
            rows += 1;
            if record.len() != headers.len() {
                continue;
            }
            let Ok(fields) = record
                .iter()
                .map(std::str::from_utf8)
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let request = AddEntryRequest {
                name: fields[name].to_owned(),
                number: fields[number].to_owned(),
                label: label.map(|l| fields[l].to_owned()).unwrap_or_default(),
            };
            for region in regions {
                if let Ok(entry) = NewEntry::parse(&request, region) {
                    round_trips(&entry, region);
                }
            }
        }
    }
);

/// An accepted entry, exported and imported again, is the same entry.
fn round_trips(entry: &NewEntry, region: Region) {
    let name = Name::parse("name", entry.name.as_str()).expect("a stored name reads back");
    assert_eq!(name.as_str(), entry.name.as_str());
    let label = Label::parse("label", entry.label.as_str()).expect("a stored label reads back");
    assert_eq!(label.as_str(), entry.label.as_str());
    let exported = match entry.number.extension() {
        Some(extension) => format!("{} ext. {extension}", entry.number.e164()),
        None => entry.number.e164().to_owned(),
    };
    let number = Number::parse("number", &exported, region)
        .unwrap_or_else(|err| panic!("{exported:?}, as exported, reads back: {err}"));
    assert_eq!(number.identity(), entry.number.identity(), "{exported:?}");
}
