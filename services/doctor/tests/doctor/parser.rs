//! The 1966 script reader: good scripts, and errors with their line and column.

use proptest::strategy::Strategy as _;
use township_doctor::{Script, ScriptError, ScriptProblem};

use crate::{reply, script};

/// A script using every form of the format.
const EVERY_FORM: &str = "\
; a comment line
   ; an indented comment line
(HOW DO YOU DO.  PLEASE TELL ME YOUR PROBLEM)
START
(DONT = DON'T)
(MOTHER DLIST(/NOUN FAMILY))
(MOM = MOTHER DLIST(/ FAMILY))
(FEEL DLIST(/BELIEF))
(MY = YOUR 2
   ((0 YOUR 0 (/FAMILY) 0) (TELL ME ABOUT YOUR 4))
   ((0 YOUR 1) (YOUR 3))
   ((0) (NEWKEY)))
(I = YOU
   ((0 YOU (* WANT NEED) 0) (WHY 3 4))
   ((0 YOU (/BELIEF) 0) (=DIT))
   ((0 YOU 0) (YOU SAY 3)))
(I'M = YOU'RE ((0 YOU'RE 0) (PRE (YOU ARE 3) (=I))))
(DIT ((0) (IN WHAT SENSE)))
(MAYBE 1 (=DIT))
(NOBODY 2 (= DIT))
(MEMORY MY
   (0 YOUR 0 = ONE 3)
   (0 YOUR 0 = TWO 3)
   (0 YOUR 0 = THREE 3)
   (0 YOUR 0 = FOUR 3))
(NONE
   ((0) (PLEASE GO ON) (I SEE)))
()
";

#[test]
fn a_script_using_every_form_of_the_format_parses() {
    let script = script(EVERY_FORM);
    assert_eq!(
        script.greeting(),
        "HOW DO YOU DO. PLEASE TELL ME YOUR PROBLEM"
    );
    assert_eq!(
        script.keywords(),
        ["DIT", "I", "I'M", "MAYBE", "MY", "NOBODY"]
    );
    assert_eq!(script.memory_keyword(), Some("MY"));
    assert_eq!(script.rank("MY"), Some(2));
    assert_eq!(script.rank("I"), Some(0));
    assert_eq!(
        script.rank("DONT"),
        None,
        "a substitute-only entry is not a keyword"
    );
    assert_eq!(reply(&script, "I want my mom"), "TELL ME ABOUT YOUR MOTHER");
    assert_eq!(reply(&script, "I need cake"), "WHY NEED CAKE");
    assert_eq!(reply(&script, "I'm fine"), "YOU SAY ARE FINE");
    assert_eq!(reply(&script, "nobody"), "IN WHAT SENSE");
}

#[test]
fn start_the_closing_list_and_memory_are_optional_and_case_does_not_matter() {
    let script = script("(hello) (x ((0) (seen 1))) (none ((0) (go on)))");
    assert_eq!(script.greeting(), "HELLO");
    assert_eq!(script.memory_keyword(), None);
    assert_eq!(reply(&script, "x"), "SEEN X");
}

#[test]
fn the_default_script_is_townships_own_and_rich_enough() {
    let script = Script::default_doctor();
    let keywords = script.keywords();
    assert!(keywords.len() >= 40, "only {} keywords", keywords.len());
    for topic in [
        "MOTHER", "FATHER", "FAMILY", "FEELINGS", "DREAM", "COMPUTER", "YES", "NO", "SORRY",
        "REMEMBER", "ALWAYS", "BECAUSE",
    ] {
        assert!(keywords.contains(&topic), "no keyword {topic}");
    }
    assert_eq!(script.memory_keyword(), Some("MY"));
    assert!(township_doctor::DEFAULT_SCRIPT.starts_with("; Township's own DOCTOR script"));
    for form in ["DLIST(", "(NEWKEY)", "(PRE ", "(=", "(MEMORY ", "(NONE"] {
        assert!(
            township_doctor::DEFAULT_SCRIPT.contains(form),
            "the script uses no {form}"
        );
    }
    assert!(script.rank("COMPUTER") > script.rank("MY"));
}

/// Parses a script that must fail, returning the error.
fn error(text: &str) -> ScriptError {
    match Script::parse(text) {
        Ok(_) => panic!("the script parsed but should not have:\n{text}"),
        Err(err) => err,
    }
}

/// The (line, column) of the error.
fn place(err: &ScriptError) -> (usize, usize) {
    (err.line, err.column)
}

const NONE: &str = "(NONE ((0) (GO ON)))";

#[test]
fn an_unclosed_parenthesis_is_reported_where_it_opens() {
    let err = error(&format!("(HI)\nSTART\n(X ((0) (SEEN 1))\n{NONE}\n"));
    assert_eq!(place(&err), (3, 1));
    assert_eq!(err.problem, ScriptProblem::UnbalancedOpen);
    assert_eq!(
        err.to_string(),
        "line 3, column 1: unbalanced parenthesis: this '(' is never closed"
    );
}

#[test]
fn a_stray_closing_parenthesis_is_reported_where_it_stands() {
    let err = error(&format!("(HI)\nSTART\n(X ((0) (SEEN 1))))\n{NONE}\n"));
    assert_eq!(place(&err), (3, 19));
    assert_eq!(err.problem, ScriptProblem::UnbalancedClose);
}

#[test]
fn comment_lines_count_for_line_numbers() {
    let err = error("; one\n; two\n(HI)\n    (X ((0) (SEEN 1))\n");
    assert_eq!(place(&err), (4, 5));
}

#[test]
fn a_link_to_an_undefined_keyword_is_an_error_at_the_link() {
    let err = error(&format!("(HI)\n(X ((0) (=NOWHERE)))\n{NONE}"));
    assert_eq!(place(&err), (2, 11));
    assert_eq!(
        err.problem,
        ScriptProblem::UndefinedKeyword("NOWHERE".into())
    );
}

#[test]
fn a_link_to_a_substitute_only_entry_is_an_error() {
    let err = error(&format!("(HI)\n(DONT = DON'T)\n(X (=DONT))\n{NONE}"));
    assert_eq!(place(&err), (3, 6));
}

#[test]
fn a_pre_link_to_an_undefined_keyword_is_an_error() {
    let err = error(&format!("(HI)\n(X ((0) (PRE (A 1) (=GONE))))\n{NONE}"));
    assert_eq!(place(&err), (2, 22));
    assert_eq!(err.problem, ScriptProblem::UndefinedKeyword("GONE".into()));
}

#[test]
fn memory_naming_an_unknown_keyword_is_an_error_at_the_keyword() {
    let err = error(&format!(
        "(HI)\n(MEMORY MY (0 = A) (0 = B) (0 = C) (0 = D))\n{NONE}"
    ));
    assert_eq!(place(&err), (2, 9));
    assert_eq!(err.problem, ScriptProblem::UndefinedKeyword("MY".into()));
}

#[test]
fn memory_without_four_transformations_is_an_error() {
    let err = error(&format!(
        "(HI)\n(MY ((0) (OK)))\n(MEMORY MY (0 = A) (0 = B) (0 = C))\n{NONE}"
    ));
    assert_eq!(place(&err), (3, 2));
    assert_eq!(err.problem, ScriptProblem::MemoryTransformations(3));
}

#[test]
fn a_memory_transformation_needs_its_equals_sign() {
    let err = error(&format!(
        "(HI)\n(MY ((0) (OK)))\n(MEMORY MY (0 A) (0 = B) (0 = C) (0 = D))\n{NONE}"
    ));
    assert_eq!(place(&err), (3, 12));
}

#[test]
fn a_missing_none_is_an_error_at_the_end_of_the_script() {
    let err = error("(HI)\nSTART\n(X ((0) (SEEN)))\n");
    assert_eq!(err.problem, ScriptProblem::MissingNone);
    assert_eq!(place(&err), (3, 17));
}

#[test]
fn none_must_have_the_decomposition_zero_and_plain_reassemblies() {
    let err = error("(HI)\n(NONE ((1) (GO ON)))");
    assert_eq!(place(&err), (2, 8));
    let err = error("(HI)\n(X ((0) (OK)))\n(NONE ((0) (GO ON) (=X)))");
    assert_eq!(place(&err), (3, 20));
    assert!(matches!(err.problem, ScriptProblem::NoneShape(_)));
}

#[test]
fn a_reassembly_number_beyond_the_decomposition_is_an_error_at_the_number() {
    let err = error(&format!("(HI)\n(X ((0 X 0) (SAW 1 AND 4)))\n{NONE}"));
    assert_eq!(place(&err), (2, 24));
    assert_eq!(
        err.problem,
        ScriptProblem::PartOutOfRange { part: 4, parts: 3 }
    );
    assert_eq!(
        err.to_string(),
        "line 2, column 24: reassembly uses part 4, but the decomposition has only 3 parts"
    );
}

#[test]
fn a_pre_or_memory_reassembly_number_beyond_the_decomposition_is_an_error() {
    let err = error(&format!("(HI)\n(X ((0) (PRE (A 2) (=X))))\n{NONE}"));
    assert_eq!(place(&err), (2, 17));
    let err = error(&format!(
        "(HI)\n(MY ((0) (OK)))\n(MEMORY MY (0 = A 2) (0 = B) (0 = C) (0 = D))\n{NONE}"
    ));
    assert_eq!(place(&err), (3, 19));
}

#[test]
fn a_part_number_glued_to_punctuation_is_an_error_not_a_word() {
    let err = error(&format!("(HI)\n(X ((0 X 0) (SAW 1. WHY)))\n{NONE}"));
    assert_eq!(place(&err), (2, 18));
    assert!(err.to_string().contains("`5 .`"), "{err}");
    assert!(Script::parse(&format!("(HI)\n(X ((0 X 0) (SAW 1 . WHY)))\n{NONE}")).is_ok());
}

#[test]
fn reassembly_part_zero_is_an_error() {
    let err = error(&format!("(HI)\n(X ((0) (SAW 0)))\n{NONE}"));
    assert_eq!(err.problem, ScriptProblem::PartZero);
    assert_eq!(place(&err), (2, 14));
}

#[test]
fn a_keyword_defined_twice_is_an_error_at_the_second() {
    let err = error(&format!("(HI)\n(X ((0) (A)))\n  (X ((0) (B)))\n{NONE}"));
    assert_eq!(place(&err), (3, 4));
    assert_eq!(
        err.problem,
        ScriptProblem::DuplicateKeyword {
            keyword: "X".into(),
            first_line: 2
        }
    );
}

#[test]
fn a_tag_no_dlist_gives_is_an_error_at_its_use() {
    let err = error(&format!("(HI)\n(X ((0 (/PETS) 0) (A)))\n{NONE}"));
    assert_eq!(place(&err), (2, 9));
    assert_eq!(err.problem, ScriptProblem::UndefinedTag("PETS".into()));
}

#[test]
fn a_dlist_must_start_with_a_slash() {
    let err = error(&format!("(HI)\n(CAT DLIST(PET))\n{NONE}"));
    assert_eq!(place(&err), (2, 12));
}

#[test]
fn a_word_class_must_be_star_or_slash() {
    let err = error(&format!("(HI)\n(X ((0 (A B) 0) (A)))\n{NONE}"));
    assert_eq!(place(&err), (2, 9));
}

#[test]
fn the_greeting_must_come_first() {
    let err = error(&format!("START\n{NONE}"));
    assert_eq!(place(&err), (1, 1));
    let err = error("");
    assert!(matches!(err.problem, ScriptProblem::UnexpectedEnd(_)));
}

#[test]
fn a_rule_needs_a_reassembly() {
    let err = error(&format!("(HI)\n(X ((0 X 0)))\n{NONE}"));
    assert_eq!(place(&err), (2, 4));
}

#[test]
fn an_empty_decomposition_is_an_error() {
    let err = error(&format!("(HI)\n(X (() (A)))\n{NONE}"));
    assert_eq!(place(&err), (2, 5));
}

#[test]
fn newkey_stands_alone() {
    let err = error(&format!("(HI)\n(X ((0) (NEWKEY NOW)))\n{NONE}"));
    assert_eq!(place(&err), (2, 17));
}

#[test]
fn nothing_may_follow_the_closing_empty_list() {
    let err = error(&format!("(HI)\n{NONE}\n()\n(X ((0) (A)))"));
    assert_eq!(place(&err), (4, 1));
}

#[test]
fn an_atom_where_an_entry_belongs_is_an_error() {
    let err = error(&format!("(HI)\nSTART\n{NONE}\nSTRAY"));
    assert_eq!(place(&err), (4, 1));
    assert!(err.to_string().contains("STRAY"));
}

#[test]
fn a_rank_too_large_is_an_error() {
    let err = error(&format!("(HI)\n(X 99999999999 ((0) (A)))\n{NONE}"));
    assert_eq!(place(&err), (2, 4));
    assert!(matches!(err.problem, ScriptProblem::NumberTooLarge(_)));
}

#[test]
fn an_entry_that_says_nothing_is_an_error() {
    let err = error(&format!("(HI)\n(X)\n{NONE}"));
    assert_eq!(place(&err), (2, 1));
}

#[test]
fn something_after_a_link_is_an_error() {
    let err = error(&format!("(HI)\n(Y ((0) (B)))\n(X (=Y) ((0) (A)))\n{NONE}"));
    assert_eq!(place(&err), (3, 9));
}

/// Script-shaped text: atoms, numbers, `=` and `/`, parentheses (balanced or not), line breaks
/// and `;` comments, in any order.
fn script_shaped() -> impl proptest::strategy::Strategy<Value = String> {
    let piece = proptest::prop_oneof![
        "[A-Z]{1,6}",
        "[0-9]{1,3}",
        proptest::strategy::Just("(".to_owned()),
        proptest::strategy::Just(")".to_owned()),
        proptest::strategy::Just("=".to_owned()),
        proptest::strategy::Just("/".to_owned()),
        proptest::strategy::Just("START".to_owned()),
        proptest::strategy::Just("MEMORY".to_owned()),
        proptest::strategy::Just("NONE".to_owned()),
        proptest::strategy::Just("\n; note\n".to_owned()),
    ];
    proptest::collection::vec(piece, 0..80).prop_map(|pieces| pieces.join(" "))
}

proptest::proptest! {
    #[test]
    fn any_text_is_a_script_or_an_error_never_a_panic(text in ".{0,300}") {
        let _ = Script::parse(&text);
    }

    #[test]
    fn script_shaped_text_is_a_script_or_an_error_and_a_script_always_answers(
        text in script_shaped(),
        input in "[A-Za-z ,.?]{0,60}",
    ) {
        if let Ok(parsed) = Script::parse(&text) {
            let _ = township_doctor::Engine::greeting(&parsed);
            let mut state = township_doctor::EngineState::new();
            let _ = township_doctor::Engine::reply(&parsed, &mut state, &input);
        }
    }

    #[test]
    fn the_default_doctor_answers_any_line(input in ".{0,200}") {
        let doctor = Script::default_doctor();
        let mut state = township_doctor::EngineState::new();
        let _ = township_doctor::Engine::reply(&doctor, &mut state, &input);
    }
}
