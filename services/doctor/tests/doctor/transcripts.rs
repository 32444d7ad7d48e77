//! The transcripts in `tests/transcripts/`, replayed: the default script's conversation and a
//! classic-mode conversation with a fixed seed.

use township_doctor::{Script, Transcript, replay_classic, replay_script};

const DOCTOR: &str = include_str!("../transcripts/doctor.txt");
const CLASSIC: &str = include_str!("../transcripts/classic.txt");

/// The seed the classic transcript was recorded with.
const CLASSIC_SEED: u64 = 1966;

#[test]
fn the_default_script_follows_its_transcript() {
    let checked =
        replay_script(&Script::default_doctor(), DOCTOR).unwrap_or_else(|err| panic!("{err}"));
    assert!(checked >= 30, "only {checked} exchanges");
}

#[test]
fn classic_mode_follows_its_transcript() {
    let checked = replay_classic(CLASSIC_SEED, CLASSIC).unwrap_or_else(|err| panic!("{err}"));
    assert!(checked >= 10, "only {checked} exchanges");
}

#[test]
fn a_transcript_against_another_script_fails_at_the_first_difference() {
    let other = Script::parse("(HI) START (NONE ((0) (GO ON)))").expect("parses");
    let err = replay_script(&other, DOCTOR).expect_err("differs");
    let first = Transcript::parse(DOCTOR).expect("parses").exchanges()[0].line;
    assert!(
        matches!(err, township_doctor::TranscriptError::Mismatch { line, .. } if line == first),
        "{err}"
    );
}
