import Foundation
import TOMLKit

/// The TOML configuration file (README, "Configuration"). One file may hold a `[server]` and a
/// `[mediator]` table; each command reads its own. Unknown keys are errors, so a typo never
/// silently drops a setting.
struct ConfigFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    private let root: TOMLTable
    private let text: String

    init(path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure(description: "cannot read config file \(path)")
        }
        self.text = text
        do {
            root = try TOMLTable(string: text)
        } catch let e as TOMLParseError {
            // The parser's reason ("redefinition of 'keepalive'") with the place: a line and column
            // alone left a stranger to guess what is wrong there.
            throw Failure(description: "config file \(path) is not valid TOML (\(e.source.begin.debugDescription)): \(e.description)")
        } catch {
            throw Failure(description: "config file \(path) is not valid TOML: \(error)")
        }
        for key in root.keys where !["server", "mediator"].contains(key) {
            throw Failure(description: "config file \(path): unknown table '\(key)' (expected [server] or [mediator])")
        }
    }

    /// A section's values, checked against the keys that section allows.
    func section(_ name: String, allowed: Set<String>) throws -> Section? {
        guard let value = root[name] else { return nil }
        guard let table = value.table else { throw Failure(description: "config file \(path): '\(name)' must be a table") }
        for key in table.keys where !allowed.contains(key) {
            throw Failure(
                description:
                    "config file \(Self.place(path, Self.line(of: key, in: name, text: text))): unknown key '\(key)' in [\(name)]; allowed: \(allowed.sorted().joined(separator: ", "))"
            )
        }
        return Section(name: name, path: path, table: table, text: text)
    }

    /// The line (from 1) where `key` is set in table `[section]`, found in the text: TOMLKit keeps no
    /// positions for values, and an error that names its line is found at once. Nil for what this
    /// plain reading does not find (a quoted or dotted key); the error then names the file alone.
    static func line(of key: String, in section: String, text: String) -> Int? {
        var inSection = false
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") {
                inSection = line.hasPrefix("[\(section)]")
                continue
            }
            guard inSection, line.hasPrefix(key) else { continue }
            if line.dropFirst(key.count).drop(while: { $0 == " " || $0 == "\t" }).hasPrefix("=") { return index + 1 }
        }
        return nil
    }

    /// `FILE line N`, or `FILE` where the line is not known.
    static func place(_ path: String, _ line: Int?) -> String { line.map { "\(path) line \($0)" } ?? path }

    struct Section {
        let name: String
        let path: String
        let table: TOMLTable
        let text: String

        /// Where `key` is, for its error.
        private func at(_ key: String) -> String { ConfigFile.place(path, ConfigFile.line(of: key, in: name, text: text)) }

        func string(_ key: String) throws -> String? {
            guard let v = table[key] else { return nil }
            guard let s = v.string else { throw Failure(description: "\(at(key)): [\(name)] \(key) must be a string") }
            return s
        }

        func strings(_ key: String) throws -> [String] {
            guard let v = table[key] else { return [] }
            guard let a = v.array else { throw Failure(description: "\(at(key)): [\(name)] \(key) must be an array of strings") }
            return try (0..<a.count).map { i in
                guard let s = a[i].string else { throw Failure(description: "\(at(key)): [\(name)] \(key) must be an array of strings") }
                return s
            }
        }

        /// A key that takes one string or an array of them.
        func stringOrStrings(_ key: String) throws -> [String] {
            guard let v = table[key] else { return [] }
            if let s = v.string { return [s] }
            return try strings(key)
        }

        func seconds(_ key: String) throws -> Double? {
            guard let v = table[key] else { return nil }
            if let i = v.int { return Double(i) }
            if let d = v.double { return d }
            throw Failure(description: "\(at(key)): [\(name)] \(key) must be a number of seconds")
        }

        func int(_ key: String) throws -> Int? {
            guard let v = table[key] else { return nil }
            guard let i = v.int else { throw Failure(description: "\(at(key)): [\(name)] \(key) must be an integer") }
            return i
        }

        func bool(_ key: String) throws -> Bool? {
            guard let v = table[key] else { return nil }
            guard let b = v.bool else { throw Failure(description: "\(at(key)): [\(name)] \(key) must be true or false") }
            return b
        }
    }
}
