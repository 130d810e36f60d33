/// Why one value did not parse: the sentence shown after `file:line: key: `.
///
/// The parser adds where the value came from; a problem only says what is wrong and what
/// form is expected. A problem about a secret never contains the secret.
struct ConfigValueProblem: Error, Sendable, Equatable {
    /// A sentence, lower-case first word, saying what is wrong and what to write instead.
    var message: String

    init(_ message: String) {
        self.message = message
    }
}
