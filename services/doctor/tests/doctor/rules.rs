//! Each of the 1966 processing rules, on small scripts written for the purpose.

use township_doctor::{Engine, EngineState, Script};

use crate::{replies, reply, script};

/// A keyword X that echoes what it was given, and a NONE that says which turn it is.
const ECHO: &str = "(HI) START
    (X ((0) (SAW 1)))
    (NONE ((0) (NONE ONE) (NONE TWO) (NONE THREE)))";

#[test]
fn input_is_upper_cased_before_matching() {
    assert_eq!(
        reply(&script(ECHO), "x marks the spot"),
        "SAW X MARKS THE SPOT"
    );
}

#[test]
fn a_delimiter_before_any_keyword_drops_everything_up_to_it() {
    assert_eq!(reply(&script(ECHO), "well now, x marks"), "SAW X MARKS");
    assert_eq!(reply(&script(ECHO), "no. not yet. x marks"), "SAW X MARKS");
}

#[test]
fn a_delimiter_after_a_keyword_drops_itself_and_everything_after() {
    assert_eq!(
        reply(&script(ECHO), "x marks. the spot, here"),
        "SAW X MARKS"
    );
    assert_eq!(reply(&script(ECHO), "x marks, the spot"), "SAW X MARKS");
}

#[test]
fn but_is_a_delimiter() {
    assert_eq!(reply(&script(ECHO), "fine but x marks"), "SAW X MARKS");
    assert_eq!(reply(&script(ECHO), "x marks but the spot"), "SAW X MARKS");
}

#[test]
fn question_marks_exclamation_marks_and_semicolons_act_like_periods() {
    assert_eq!(reply(&script(ECHO), "why? x marks"), "SAW X MARKS");
    assert_eq!(
        reply(&script(ECHO), "stop! x marks; the spot"),
        "SAW X MARKS"
    );
    assert_eq!(reply(&script(ECHO), "x marks?the spot"), "SAW X MARKS");
}

#[test]
fn a_clause_without_keywords_after_the_first_delimiter_falls_to_none() {
    assert_eq!(reply(&script(ECHO), "nothing here, at all"), "NONE ONE");
}

#[test]
fn words_are_substituted_as_they_are_scanned() {
    let script = script(
        "(HI) START
         (ME = YOU) (MY = YOUR)
         (I = YOU ((0 YOU 0) (WHY DO YOU 3)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        reply(&script, "I hate my job and me"),
        "WHY DO YOU HATE YOUR JOB AND YOU"
    );
}

#[test]
fn a_word_is_substituted_once_so_swaps_do_not_swap_back() {
    let script = script(
        "(HI) START
         (I = YOU ((0) (HEARD 1)))
         (YOU = I)
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "I love you"), "HEARD YOU LOVE I");
}

#[test]
fn substitutions_in_a_dropped_clause_are_dropped_with_it() {
    let script = script(
        "(HI) START
         (ME = YOU)
         (X ((0) (SAW 1)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "tell me, x and me"), "SAW X AND YOU");
}

#[test]
fn a_keyword_of_higher_rank_is_tried_first() {
    let script = script(
        "(HI) START
         (LOW ((0) (LOW WON)))
         (HIGH 5 ((0) (HIGH WON)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "low then high"), "HIGH WON");
    assert_eq!(reply(&script, "high then low"), "HIGH WON");
}

#[test]
fn keywords_of_equal_rank_are_tried_left_to_right() {
    let script = script(
        "(HI) START
         (A ((0) (A WON)))
         (B ((0) (B WON)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "b a"), "B WON");
    assert_eq!(reply(&script, "a b"), "A WON");
}

#[test]
fn a_keyword_not_above_the_highest_rank_so_far_goes_to_the_bottom_of_the_keystack() {
    // Scanning B A C: B (1) goes on top, A (3) goes on top, C (2) is not above 3 and goes to the
    // bottom, so the keystack is A B C and B is tried before the higher-ranked C.
    let script = script(
        "(HI) START
         (A 3 ((0) (NEWKEY)))
         (B 1 ((0) (B WON)))
         (C 2 ((0) (C WON)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "b a c"), "B WON");
    assert_eq!(reply(&script, "c a b"), "C WON");
}

#[test]
fn a_link_entry_continues_with_the_linked_keywords_rules() {
    let script = script(
        "(HI) START
         (PERHAPS ((0) (UNSURE ABOUT 1)))
         (MAYBE (=PERHAPS))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "maybe so"), "UNSURE ABOUT MAYBE SO");
}

#[test]
fn a_link_reassembly_continues_with_the_linked_keyword_on_the_same_words() {
    let script = script(
        "(HI) START
         (WHY ((0 WHY NOT 0) (WHY NOT INDEED)) ((0) (=WHAT)))
         (WHAT ((0) (YOU ASK 1)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "why me"), "YOU ASK WHY ME");
    assert_eq!(reply(&script, "why not"), "WHY NOT INDEED");
}

#[test]
fn an_entry_link_is_followed_when_no_decomposition_matches() {
    let script = script(
        "(HI) START
         (DREAMT ((0 DREAMT OF 0) (DREAMT OF 4)) (=DREAM))
         (DREAM ((0) (DREAMS AGAIN)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "I dreamt of fish"), "DREAMT OF FISH");
    assert_eq!(reply(&script, "I dreamt badly"), "DREAMS AGAIN");
}

#[test]
fn newkey_tries_the_next_keyword_on_the_keystack() {
    let script = script(
        "(HI) START
         (LIKE 10 ((0 IS LIKE 0) (ALIKE)) ((0) (NEWKEY)))
         (CAKE ((0) (CAKE AGAIN)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "cake I like"), "CAKE AGAIN");
    assert_eq!(reply(&script, "he is like cake"), "ALIKE");
}

#[test]
fn newkey_with_an_empty_keystack_falls_to_none() {
    let script = script(
        "(HI) START
         (LIKE ((0) (NEWKEY)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "I like it"), "GO ON");
}

#[test]
fn no_matching_decomposition_and_no_link_ends_in_none_as_in_1966() {
    // The 1966 code abandons the keystack here: the lower keyword B is not tried.
    let script = script(
        "(HI) START
         (A 2 ((0 NEVER MATCHES 0) (A WON)))
         (B ((0) (B WON)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "b a"), "GO ON");
}

#[test]
fn pre_rewrites_the_input_then_continues_with_its_keyword() {
    let script = script(
        "(HI) START
         (I'M = YOU'RE ((0 YOU'RE 0) (PRE (YOU ARE 3) (=I))))
         (I = YOU ((0 YOU ARE 0) (WHY ARE YOU 4)) ((0) (YOU SAID 1)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "I'm tired of it"), "WHY ARE YOU TIRED OF IT");
}

#[test]
fn a_dlist_tag_matches_any_word_given_that_tag() {
    let script = script(
        "(HI) START
         (MOTHER DLIST(/NOUN FAMILY))
         (SISTER DLIST(/ FAMILY))
         (MOM = MOTHER)
         (MY = YOUR ((0 YOUR (/FAMILY) 0) (FAMILY 3 4)) ((0) (OTHER 1)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(
            &script,
            &["my sister sings", "my mom sings", "my car sings"]
        ),
        [
            "FAMILY SISTER SINGS",
            "FAMILY MOTHER SINGS",
            "OTHER YOUR CAR SINGS"
        ]
    );
}

#[test]
fn a_tag_list_matches_a_word_with_any_of_its_tags() {
    let script = script(
        "(HI) START
         (CAT DLIST(/PET))
         (OAK DLIST(/TREE))
         (SEE ((0 (/PET TREE) 0) (A 2)) ((0) (NOTHING)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(&script, &["see the oak", "see the cat", "see the sea"]),
        ["A OAK", "A CAT", "NOTHING"]
    );
}

#[test]
fn an_alternative_list_matches_any_one_of_its_words() {
    let script = script(
        "(HI) START
         (FEEL ((0 FEEL (*SAD BLUE) 0) (SORRY YOU ARE 3))
               ((0 FEEL (* GOOD FINE) 0) (GLAD 3))
               ((0) (HOW)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(&script, &["I feel blue", "I feel fine", "I feel odd"]),
        ["SORRY YOU ARE BLUE", "GLAD FINE", "HOW"]
    );
}

#[test]
fn a_number_matches_exactly_that_many_words() {
    let script = script(
        "(HI) START
         (X ((0 X 2) (TWO 3)) ((X 1 0) (ONE 2 REST 3)) ((0) (OTHER)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(&script, &["a x b c", "x b c d", "x", "a x b"]),
        ["TWO B C", "ONE B REST C D", "OTHER", "OTHER"]
    );
}

#[test]
fn zero_matches_any_number_of_words_taking_as_few_as_possible() {
    let script = script(
        "(HI) START
         (X ((0 X 0) (BEFORE 1 AFTER 3)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(reply(&script, "x"), "BEFORE AFTER");
    assert_eq!(reply(&script, "a x b x c"), "BEFORE A AFTER B X C");
}

#[test]
fn reassemblies_cycle_separately_for_each_decomposition_rule() {
    let script = script(
        "(HI) START
         (K ((0 RED 0) (R1) (R2)) ((0) (O1) (O2) (O3)))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(&script, &["k red", "k", "k red", "k", "k red", "k", "k"]),
        ["R1", "O1", "R2", "O2", "R1", "O3", "O1"]
    );
}

#[test]
fn a_linked_keywords_cycle_is_shared_with_its_direct_use() {
    let script = script(
        "(HI) START
         (SORRY ((0) (S1) (S2) (S3)))
         (APOLOGIZE (=SORRY))
         (NONE ((0) (GO ON)))",
    );
    assert_eq!(
        replies(&script, &["sorry", "apologize", "sorry"]),
        ["S1", "S2", "S3"]
    );
}

#[test]
fn none_replies_in_turn_when_no_keyword_applies() {
    assert_eq!(
        replies(&script(ECHO), &["a", "b", "c", "d", ""]),
        ["NONE ONE", "NONE TWO", "NONE THREE", "NONE ONE", "NONE TWO"]
    );
}

#[test]
fn none_reassembly_numbers_echo_the_whole_remaining_input() {
    let script = script("(HI) START (NONE ((0) (YOU SAID 1)))");
    assert_eq!(
        reply(&script, "hello there, old friend"),
        "YOU SAID OLD FRIEND"
    );
}

#[test]
fn limit_starts_at_one_and_advances_before_every_input() {
    let script = script(ECHO);
    let mut state = EngineState::new();
    assert_eq!(state.limit(), 1);
    let mut limits = Vec::new();
    for _ in 0..5 {
        Engine::reply(&script, &mut state, "anything");
        limits.push(state.limit());
    }
    assert_eq!(limits, [2, 3, 4, 1, 2]);
}

/// MY lays down memories; all four transformations are alike, so the hash does not matter.
const MEMORY: &str = "(HI) START
    (MY = YOUR 2 ((0 YOUR 0) (YOUR 3)))
    (MEMORY MY (0 YOUR 0 = MEM 3) (0 YOUR 0 = MEM 3) (0 YOUR 0 = MEM 3) (0 YOUR 0 = MEM 3))
    (NONE ((0) (N1) (N2)))";

#[test]
fn a_memory_is_replayed_only_when_there_is_no_keyword_and_limit_is_four() {
    let script = script(MEMORY);
    let inputs = [
        "my cat",  // LIMIT 2: MY replies, memory MEM CAT
        "nothing", // LIMIT 3: no keyword, not LIMIT 4: NONE
        "my dog",  // LIMIT 4, but a keyword: MY replies, memory MEM DOG
        "nothing", // LIMIT 1
        "nothing", // LIMIT 2
        "nothing", // LIMIT 3
        "nothing", // LIMIT 4: the oldest memory
        "nothing", // LIMIT 1
        "nothing", // LIMIT 2
        "nothing", // LIMIT 3
        "nothing", // LIMIT 4: the next memory
        "nothing", // LIMIT 1
        "nothing", // LIMIT 2
        "nothing", // LIMIT 3
        "nothing", // LIMIT 4: no memory left: NONE
    ];
    assert_eq!(
        replies(&script, &inputs),
        [
            "YOUR CAT", "N1", "YOUR DOG", "N2", "N1", "N2", "MEM CAT", "N1", "N2", "N1", "MEM DOG",
            "N2", "N1", "N2", "N1"
        ]
    );
}

#[test]
fn memories_queue_oldest_first() {
    let script = script(MEMORY);
    let mut state = EngineState::new();
    for input in ["my cat", "my dog", "my fish"] {
        Engine::reply(&script, &mut state, input);
    }
    assert_eq!(
        state.memories().collect::<Vec<_>>(),
        ["MEM CAT", "MEM DOG", "MEM FISH"]
    );
}

#[test]
fn the_memory_transformation_is_chosen_by_hash_of_the_last_word() {
    // HASH(w, 2): TIME → 0, KIDS → 1, YOU → 2, HERE → 3.
    let script = script(
        "(HI) START
         (MY = YOUR ((0) (OK)))
         (ME = YOU)
         (MEMORY MY (0 YOUR 0 = ZERO 3) (0 YOUR 0 = ONE 3) (0 YOUR 0 = TWO 3) (0 YOUR 0 = THREE 3))
         (NONE ((0) (GO ON)))",
    );
    let mut state = EngineState::new();
    for input in ["my time", "my kids", "my friend saw me", "my place is here"] {
        Engine::reply(&script, &mut state, input);
    }
    assert_eq!(
        state.memories().collect::<Vec<_>>(),
        [
            "ZERO TIME",
            "ONE KIDS",
            "TWO FRIEND SAW YOU",
            "THREE PLACE IS HERE"
        ]
    );
}

#[test]
fn a_memory_is_laid_down_only_when_its_decomposition_matches() {
    let script = script(
        "(HI) START
         (MY = YOUR ((0) (OK)))
         (MEMORY MY (0 YOUR 2 0 = M 3 4) (0 YOUR 2 0 = M 3 4)
                    (0 YOUR 2 0 = M 3 4) (0 YOUR 2 0 = M 3 4))
         (NONE ((0) (GO ON)))",
    );
    let mut state = EngineState::new();
    Engine::reply(&script, &mut state, "my cat");
    assert_eq!(state.memories().count(), 0);
    Engine::reply(&script, &mut state, "my cat sleeps");
    assert_eq!(state.memories().collect::<Vec<_>>(), ["M CAT SLEEPS"]);
}

#[test]
fn a_memory_is_laid_down_even_when_the_memory_keyword_then_gives_way() {
    let script = script(
        "(HI) START
         (MY = YOUR ((0) (NEWKEY)))
         (MEMORY MY (0 YOUR 0 = M 3) (0 YOUR 0 = M 3) (0 YOUR 0 = M 3) (0 YOUR 0 = M 3))
         (NONE ((0) (GO ON)))",
    );
    let mut state = EngineState::new();
    let reply = Engine::reply(&script, &mut state, "my cat");
    assert_eq!(reply.text, "GO ON");
    assert_eq!(state.memories().collect::<Vec<_>>(), ["M CAT"]);
}

#[test]
fn a_link_cycle_ends_in_none() {
    let script = script(
        "(HI) START
         (A (=B))
         (B (=A))
         (NONE ((0) (STOPPED)))",
    );
    assert_eq!(reply(&script, "a"), "STOPPED");
}

#[test]
fn a_reassembly_link_cycle_ends_in_none() {
    let script = script(
        "(HI) START
         (A ((0) (=B)))
         (B ((0) (=A)))
         (NONE ((0) (STOPPED)))",
    );
    assert_eq!(reply(&script, "b"), "STOPPED");
}

#[test]
fn a_pre_chain_that_grows_the_input_ends_in_none() {
    let script = script(
        "(HI) START
         (A ((0) (PRE (1 1) (=A))))
         (NONE ((0) (STOPPED)))",
    );
    assert_eq!(reply(&script, "a b c"), "STOPPED");
}

#[test]
fn an_empty_input_gets_a_reply() {
    assert_eq!(reply(&script(ECHO), ""), "NONE ONE");
    assert_eq!(reply(&script(ECHO), " ... ,,, "), "NONE ONE");
}

#[test]
fn the_greeting_is_the_first_list_of_the_script() {
    let script = script("(HOW DO YOU DO.  PLEASE SIT DOWN) START (NONE ((0) (GO ON)))");
    assert_eq!(script.greeting(), "HOW DO YOU DO. PLEASE SIT DOWN");
    let greeting = Engine::greeting(&script);
    assert_eq!(greeting.display_text, "How do you do. Please sit down.");
}

#[test]
fn display_text_is_sentence_case_and_keeps_the_pronoun_i() {
    let script = script(
        "(HI) START
         (X ((0) (I SEE. WHY DO YOU SAY 1)))
         (NONE ((0) (GO ON)))",
    );
    let reply = Engine::reply(&script, &mut EngineState::new(), "x marks");
    assert_eq!(reply.text, "I SEE. WHY DO YOU SAY X MARKS");
    assert_eq!(reply.display_text, "I see. Why do you say x marks?");
}

#[test]
fn a_shared_script_serves_independent_patients() {
    let script = std::sync::Arc::new(Script::default_doctor());
    let mut first = township_doctor::Session::new(script.clone());
    let mut second = township_doctor::Session::new(script);
    let a = first.reply("I am sad");
    let b = second.reply("I am sad");
    assert_eq!(a, b);
    assert_ne!(
        first.reply("I am sad"),
        a,
        "the first patient's cycle moved on"
    );
}
