//! What zxcvbn says about a refused password, in the member's language: the warning and
//! suggestions a sign-up or password-reset page shows after the form is submitted (no
//! JavaScript strength meter). The texts are one exhaustive `match` per zxcvbn enum, so a
//! variant added by a zxcvbn upgrade does not compile until it has both translations.

use zxcvbn::feedback::{Feedback, Suggestion, Warning};

use crate::web::i18n::Lang;

/// zxcvbn's verdict on a password it found too easy to guess.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StrengthFeedback {
    /// What is wrong, when zxcvbn can name it ("this is a top-10 common password").
    pub warning: Option<Warning>,
    /// How to do better, most useful first.
    pub suggestions: Vec<Suggestion>,
}

impl StrengthFeedback {
    /// zxcvbn's feedback for a weak password. zxcvbn 3.1 always gives some below score 3,
    /// but its API does not promise it; when it gives none (or an empty one) a member
    /// still needs a next step, so this falls back to zxcvbn's own advice for an
    /// unrecognised password: a few uncommon words, no need for symbols.
    pub fn from_zxcvbn(feedback: Option<&Feedback>) -> Self {
        match feedback {
            Some(f) if f.warning().is_some() || !f.suggestions().is_empty() => Self {
                warning: f.warning(),
                suggestions: f.suggestions().to_vec(),
            },
            _ => Self {
                warning: None,
                suggestions: vec![
                    Suggestion::UseAFewWordsAvoidCommonPhrases,
                    Suggestion::NoNeedForSymbolsDigitsOrUppercaseLetters,
                ],
            },
        }
    }

    pub fn warning_text(&self, lang: Lang) -> Option<&'static str> {
        self.warning.map(|w| warning_text(w, lang))
    }

    pub fn suggestion_texts(&self, lang: Lang) -> Vec<&'static str> {
        self.suggestions
            .iter()
            .map(|&s| suggestion_text(s, lang))
            .collect()
    }
}

/// The text of a zxcvbn warning in `lang`.
pub fn warning_text(warning: Warning, lang: Lang) -> &'static str {
    use Lang::{En, Ja};
    use Warning as W;
    match (warning, lang) {
        (W::StraightRowsOfKeysAreEasyToGuess, Ja) => {
            "キーボードで一列に並んだキーの並びは推測されやすいです。"
        }
        (W::StraightRowsOfKeysAreEasyToGuess, En) => "Straight rows of keys are easy to guess.",
        (W::ShortKeyboardPatternsAreEasyToGuess, Ja) => {
            "キーボード上の短いパターンは推測されやすいです。"
        }
        (W::ShortKeyboardPatternsAreEasyToGuess, En) => {
            "Short keyboard patterns are easy to guess."
        }
        (W::RepeatsLikeAaaAreEasyToGuess, Ja) => {
            "「aaa」のような同じ文字の繰り返しは推測されやすいです。"
        }
        (W::RepeatsLikeAaaAreEasyToGuess, En) => "Repeats like \"aaa\" are easy to guess.",
        (W::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess, Ja) => {
            "「abcabcabc」のような繰り返しは、「abc」よりわずかに推測しにくくなるだけです。"
        }
        (W::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess, En) => {
            "Repeats like \"abcabcabc\" are only slightly harder to guess than \"abc\"."
        }
        (W::ThisIsATop10Password, Ja) => "非常によく使われているパスワードです（上位10位以内）。",
        (W::ThisIsATop10Password, En) => "This is a top-10 common password.",
        (W::ThisIsATop100Password, Ja) => "非常によく使われているパスワードです（上位100位以内）。",
        (W::ThisIsATop100Password, En) => "This is a top-100 common password.",
        (W::ThisIsACommonPassword, Ja) => "よく使われているパスワードです。",
        (W::ThisIsACommonPassword, En) => "This is a very common password.",
        (W::ThisIsSimilarToACommonlyUsedPassword, Ja) => "よく使われているパスワードに似ています。",
        (W::ThisIsSimilarToACommonlyUsedPassword, En) => {
            "This is similar to a commonly used password."
        }
        (W::SequencesLikeAbcAreEasyToGuess, Ja) => {
            "「abc」や「6543」のような連続した文字は推測されやすいです。"
        }
        (W::SequencesLikeAbcAreEasyToGuess, En) => {
            "Sequences like \"abc\" or \"6543\" are easy to guess."
        }
        (W::RecentYearsAreEasyToGuess, Ja) => "最近の西暦年は推測されやすいです。",
        (W::RecentYearsAreEasyToGuess, En) => "Recent years are easy to guess.",
        (W::AWordByItselfIsEasyToGuess, Ja) => "単語ひとつだけでは推測されやすいです。",
        (W::AWordByItselfIsEasyToGuess, En) => "A word by itself is easy to guess.",
        (W::DatesAreOftenEasyToGuess, Ja) => "日付は推測されやすい場合が多いです。",
        (W::DatesAreOftenEasyToGuess, En) => "Dates are often easy to guess.",
        (W::NamesAndSurnamesByThemselvesAreEasyToGuess, Ja) => {
            "名前や名字だけでは推測されやすいです。"
        }
        (W::NamesAndSurnamesByThemselvesAreEasyToGuess, En) => {
            "Names and surnames by themselves are easy to guess."
        }
        (W::CommonNamesAndSurnamesAreEasyToGuess, Ja) => "よくある名前や名字は推測されやすいです。",
        (W::CommonNamesAndSurnamesAreEasyToGuess, En) => {
            "Common names and surnames are easy to guess."
        }
    }
}

/// The text of a zxcvbn suggestion in `lang`.
pub fn suggestion_text(suggestion: Suggestion, lang: Lang) -> &'static str {
    use Lang::{En, Ja};
    use Suggestion as S;
    match (suggestion, lang) {
        (S::UseAFewWordsAvoidCommonPhrases, Ja) => {
            "よく知られた言い回しは避け、いくつかの単語を組み合わせてください。"
        }
        (S::UseAFewWordsAvoidCommonPhrases, En) => {
            "Use a few words together, and avoid common phrases."
        }
        (S::NoNeedForSymbolsDigitsOrUppercaseLetters, Ja) => {
            "記号・数字・大文字を必ず含める必要はありません。"
        }
        (S::NoNeedForSymbolsDigitsOrUppercaseLetters, En) => {
            "There is no need for symbols, digits or uppercase letters."
        }
        (S::AddAnotherWordOrTwo, Ja) => {
            "単語をもう1〜2個加えてください。あまり使われない単語ほど効果的です。"
        }
        (S::AddAnotherWordOrTwo, En) => "Add another word or two. Uncommon words are better.",
        (S::CapitalizationDoesntHelpVeryMuch, Ja) => {
            "大文字を混ぜても、推測しにくさはあまり変わりません。"
        }
        (S::CapitalizationDoesntHelpVeryMuch, En) => "Capitalization doesn't help very much.",
        (S::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase, Ja) => {
            "すべて大文字にしても、すべて小文字の場合とほとんど同じくらい推測されやすいです。"
        }
        (S::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase, En) => {
            "All-uppercase is almost as easy to guess as all-lowercase."
        }
        (S::ReversedWordsArentMuchHarderToGuess, Ja) => {
            "単語を逆から綴っても、推測しにくさはあまり変わりません。"
        }
        (S::ReversedWordsArentMuchHarderToGuess, En) => {
            "Reversed words aren't much harder to guess."
        }
        (S::PredictableSubstitutionsDontHelpVeryMuch, Ja) => {
            "「a」の代わりに「@」を使うような予想しやすい置き換えは、あまり効果がありません。"
        }
        (S::PredictableSubstitutionsDontHelpVeryMuch, En) => {
            "Predictable substitutions like \"@\" instead of \"a\" don't help very much."
        }
        (S::UseALongerKeyboardPatternWithMoreTurns, Ja) => {
            "キーボード上のパターンを使う場合は、より長く、何度も向きを変えるものにしてください。"
        }
        (S::UseALongerKeyboardPatternWithMoreTurns, En) => {
            "Use a longer keyboard pattern with more turns."
        }
        (S::AvoidRepeatedWordsAndCharacters, Ja) => "同じ単語や文字の繰り返しは避けてください。",
        (S::AvoidRepeatedWordsAndCharacters, En) => "Avoid repeated words and characters.",
        (S::AvoidSequences, Ja) => "連続した文字や数字は避けてください。",
        (S::AvoidSequences, En) => "Avoid sequences such as \"abc\" or \"6543\".",
        (S::AvoidRecentYears, Ja) => "最近の西暦年は避けてください。",
        (S::AvoidRecentYears, En) => "Avoid recent years.",
        (S::AvoidYearsThatAreAssociatedWithYou, Ja) => "ご自身に関係のある年は避けてください。",
        (S::AvoidYearsThatAreAssociatedWithYou, En) => "Avoid years that are associated with you.",
        (S::AvoidDatesAndYearsThatAreAssociatedWithYou, Ja) => {
            "誕生日や記念日など、ご自身に関係のある日付や年は避けてください。"
        }
        (S::AvoidDatesAndYearsThatAreAssociatedWithYou, En) => {
            "Avoid dates and years that are associated with you."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, listed by hand: the `match`es above make a new zxcvbn variant fail
    /// to compile; these lists make the tests below read every text.
    const WARNINGS: [Warning; 14] = [
        Warning::StraightRowsOfKeysAreEasyToGuess,
        Warning::ShortKeyboardPatternsAreEasyToGuess,
        Warning::RepeatsLikeAaaAreEasyToGuess,
        Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess,
        Warning::ThisIsATop10Password,
        Warning::ThisIsATop100Password,
        Warning::ThisIsACommonPassword,
        Warning::ThisIsSimilarToACommonlyUsedPassword,
        Warning::SequencesLikeAbcAreEasyToGuess,
        Warning::RecentYearsAreEasyToGuess,
        Warning::AWordByItselfIsEasyToGuess,
        Warning::DatesAreOftenEasyToGuess,
        Warning::NamesAndSurnamesByThemselvesAreEasyToGuess,
        Warning::CommonNamesAndSurnamesAreEasyToGuess,
    ];

    const SUGGESTIONS: [Suggestion; 13] = [
        Suggestion::UseAFewWordsAvoidCommonPhrases,
        Suggestion::NoNeedForSymbolsDigitsOrUppercaseLetters,
        Suggestion::AddAnotherWordOrTwo,
        Suggestion::CapitalizationDoesntHelpVeryMuch,
        Suggestion::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase,
        Suggestion::ReversedWordsArentMuchHarderToGuess,
        Suggestion::PredictableSubstitutionsDontHelpVeryMuch,
        Suggestion::UseALongerKeyboardPatternWithMoreTurns,
        Suggestion::AvoidRepeatedWordsAndCharacters,
        Suggestion::AvoidSequences,
        Suggestion::AvoidRecentYears,
        Suggestion::AvoidYearsThatAreAssociatedWithYou,
        Suggestion::AvoidDatesAndYearsThatAreAssociatedWithYou,
    ];

    /// Hiragana, katakana or kanji: a text left in English would have none.
    fn has_japanese(text: &str) -> bool {
        text.chars()
            .any(|c| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{4E00}'..='\u{9FFF}'))
    }

    fn check_texts(name: &str, ja: &str, en: &str) {
        assert!(has_japanese(ja), "{name}: Japanese text {ja:?}");
        assert!(ja.ends_with('。'), "{name}: Japanese text ends a sentence");
        assert!(
            !en.is_empty() && en.is_ascii(),
            "{name}: English text {en:?}"
        );
        assert!(en.ends_with('.'), "{name}: English text ends a sentence");
    }

    #[test]
    fn every_zxcvbn_warning_has_a_japanese_and_an_english_text() {
        for w in WARNINGS {
            check_texts(
                &format!("{w:?}"),
                warning_text(w, Lang::Ja),
                warning_text(w, Lang::En),
            );
        }
    }

    #[test]
    fn every_zxcvbn_suggestion_has_a_japanese_and_an_english_text() {
        for s in SUGGESTIONS {
            check_texts(
                &format!("{s:?}"),
                suggestion_text(s, Lang::Ja),
                suggestion_text(s, Lang::En),
            );
        }
    }

    #[test]
    fn zxcvbn_feedback_is_kept_and_missing_feedback_still_suggests_a_next_step() {
        let weak = zxcvbn::zxcvbn("password", &[]);
        let feedback = StrengthFeedback::from_zxcvbn(weak.feedback());
        assert_eq!(feedback.warning, Some(Warning::ThisIsATop10Password));
        assert_eq!(
            feedback.warning_text(Lang::Ja),
            Some("非常によく使われているパスワードです（上位10位以内）。")
        );
        assert!(!feedback.suggestion_texts(Lang::En).is_empty());

        let none = StrengthFeedback::from_zxcvbn(None);
        assert_eq!(none.warning_text(Lang::Ja), None);
        assert_eq!(
            none.suggestion_texts(Lang::Ja),
            [
                suggestion_text(Suggestion::UseAFewWordsAvoidCommonPhrases, Lang::Ja),
                suggestion_text(
                    Suggestion::NoNeedForSymbolsDigitsOrUppercaseLetters,
                    Lang::Ja
                ),
            ]
        );
        // Suggestions without a warning are kept as they are.
        let substituted = zxcvbn::zxcvbn("Tr0ub4dour", &[]);
        let kept = StrengthFeedback::from_zxcvbn(substituted.feedback());
        assert_eq!(kept.warning, None);
        assert_eq!(
            kept.suggestions,
            [
                Suggestion::AddAnotherWordOrTwo,
                Suggestion::CapitalizationDoesntHelpVeryMuch,
                Suggestion::PredictableSubstitutionsDontHelpVeryMuch,
            ]
        );
        // Feedback that says nothing is no feedback: the same next step.
        let empty = StrengthFeedback::from_zxcvbn(Some(&zxcvbn::feedback::Feedback::default()));
        assert_eq!(empty, none);
    }
}
