import ArgumentParser
import Foundation
import SubgateBenchCore

/// `subgate-bench table ROWS.jsonl`: the comparison table of bench/run.sh.
struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "Print the comparison table from rows written by bench/run.sh (one JSON object per line)."
    )

    @Argument(help: "The rows file.")
    var rows: String

    func run() throws {
        guard let data = FileManager.default.contents(atPath: self.rows) else {
            throw ValidationError("cannot read \(self.rows).")
        }
        let decoder = JSONDecoder()
        var rows: [CompareRow] = []
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.isEmpty {
            do {
                rows.append(try decoder.decode(CompareRow.self, from: Data(line.utf8)))
            } catch {
                throw ValidationError("\(self.rows) line \(number + 1) is not a bench row: \(error)")
            }
        }
        Console.out(CompareTable.render(rows))
    }
}
