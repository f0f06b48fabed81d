//! The shape of a data statement, read token by token without a server: the clauses of INSERT,
//! UPDATE and DELETE in their order, balanced brackets, as many values as columns, nothing after the
//! end. A statement that passes may still be refused by Cassandra (an unknown column, a type that
//! does not fit); the operator prepares it on the live cluster for that. What this catches is what
//! makes a statement unreadable, reported with the part that could not be read and where.
//!
//! # Caveats
//! Terms (values, function arguments, collection literals, conditions) are read as balanced runs of
//! tokens, not parsed: `VALUES (?, 1 +)` passes here and fails at PREPARE.

use super::{StatementError, StatementKind, Token};

/// CQL's reserved words among those a data statement uses: never a table or column name unquoted
/// (`values`, `json`, `ttl` and `timestamp` are not reserved, and make fine names).
const RESERVED: &[&str] = &[
    "and", "by", "delete", "from", "if", "in", "insert", "into", "limit", "not", "null", "or",
    "order", "select", "set", "table", "token", "update", "using", "where", "with",
];

/// Words that join values inside a term (`a IN (…)`, `m CONTAINS KEY ?`).
const OPERATOR_WORDS: &[&str] = &["in", "contains", "key", "like", "not", "and", "or", "is"];

/// A reading position over the tokens of one statement (its trailing `;` removed).
struct Cursor<'a> {
    tokens: &'a [(usize, Token)],
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.at).map(|(_, token)| token)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(found)) if found == word)
    }

    fn is_symbol(&self, symbol: char) -> bool {
        self.peek() == Some(&Token::Symbol(symbol))
    }

    /// Where the next token starts (the end of the text after the last one).
    fn offset(&self) -> usize {
        self.tokens
            .get(self.at)
            .map_or(self.text.chars().count(), |(offset, _)| *offset)
    }

    /// The error for what is here instead of `expected`, quoting the text from here.
    fn expected(&self, expected: impl Into<String>) -> StatementError {
        let found = if self.at >= self.tokens.len() {
            "the end of the statement".to_owned()
        } else {
            let rest: String = self.text.chars().skip(self.offset()).take(24).collect();
            let rest = rest.lines().next().unwrap_or_default().trim_end();
            format!("`{rest}`")
        };
        StatementError::Syntax {
            expected: expected.into(),
            found,
            at: self.offset() + 1,
        }
    }

    fn word(&mut self, word: &str, expected: &str) -> Result<(), StatementError> {
        if self.is_word(word) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.expected(expected))
        }
    }

    fn symbol(&mut self, symbol: char, expected: &str) -> Result<(), StatementError> {
        if self.is_symbol(symbol) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.expected(expected))
        }
    }

    /// A column or table name: a word that is not a clause keyword, or a quoted identifier.
    fn identifier(&mut self, expected: &str) -> Result<(), StatementError> {
        match self.peek() {
            Some(Token::Word(word)) if !RESERVED.contains(&word.as_str()) => {
                self.at += 1;
                Ok(())
            }
            Some(Token::Quoted(_)) => {
                self.at += 1;
                Ok(())
            }
            _ => Err(self.expected(expected)),
        }
    }

    /// `table` or `keyspace.table`.
    fn table(&mut self) -> Result<(), StatementError> {
        self.identifier("a table name (`keyspace.table`)")?;
        if self.is_symbol('.') {
            self.at += 1;
            self.identifier("a table name after `keyspace.`")?;
        }
        Ok(())
    }

    /// One term: a run of tokens with balanced brackets, up to a `,` or a closing bracket at its
    /// own level, or a word in `stops` at its own level. Returns how many tokens it took.
    fn term(&mut self, what: &str, stops: &[&str]) -> Result<usize, StatementError> {
        let start = self.at;
        let mut open: Vec<(char, usize)> = Vec::new();
        // At the term's own level, two values in a row (`? extra`) need an operator between them.
        let mut after_value = false;
        while let Some(token) = self.peek() {
            if open.is_empty() {
                let value = match token {
                    Token::Word(word) => !OPERATOR_WORDS.contains(&word.as_str()),
                    Token::Quoted(_) | Token::Literal | Token::Question | Token::Named(_) => true,
                    _ => false,
                };
                let stop = matches!(token, Token::Word(word) if stops.contains(&word.as_str()));
                if value && after_value && !stop {
                    return Err(self.expected(format!("an operator or `,` in {what}")));
                }
                after_value = value;
            }
            match token {
                Token::Symbol(c @ ('(' | '[' | '{')) => open.push((*c, self.offset())),
                Token::Symbol(c @ (')' | ']' | '}')) => match open.pop() {
                    Some((opening, _)) if closes(opening) == *c => {}
                    Some((opening, offset)) => {
                        return Err(StatementError::Syntax {
                            expected: format!(
                                "`{}` closing the `{opening}` at character {}",
                                closes(opening),
                                offset + 1
                            ),
                            found: format!("`{c}`"),
                            at: self.offset() + 1,
                        });
                    }
                    None => break,
                },
                Token::Symbol(',') if open.is_empty() => break,
                Token::Word(word) if open.is_empty() && stops.contains(&word.as_str()) => break,
                _ => {}
            }
            self.at += 1;
        }
        if let Some((opening, offset)) = open.last() {
            return Err(StatementError::Syntax {
                expected: format!(
                    "`{}` closing the `{opening}` at character {}",
                    closes(*opening),
                    offset + 1
                ),
                found: "the end of the statement".to_owned(),
                at: self.offset() + 1,
            });
        }
        if self.at == start {
            return Err(self.expected(what));
        }
        Ok(self.at - start)
    }

    /// `( item, item … )`, each item read by `item`; returns how many.
    fn list(
        &mut self,
        name: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), StatementError>,
    ) -> Result<usize, StatementError> {
        let opened = self.offset();
        self.symbol('(', &format!("`(` opening the {name}"))?;
        let mut count = 0;
        loop {
            item(self)?;
            count += 1;
            if self.is_symbol(',') {
                self.at += 1;
            } else if self.is_symbol(')') {
                self.at += 1;
                return Ok(count);
            } else if self.at >= self.tokens.len() {
                return Err(StatementError::Syntax {
                    expected: format!("`)` closing the {name} opened at character {}", opened + 1),
                    found: "the end of the statement".to_owned(),
                    at: self.offset() + 1,
                });
            } else {
                return Err(self.expected(format!("`,` or `)` in the {name}")));
            }
        }
    }

    /// `USING TTL t AND TIMESTAMP t`, when present.
    fn using(&mut self) -> Result<(), StatementError> {
        if !self.is_word("using") {
            return Ok(());
        }
        self.at += 1;
        loop {
            if self.is_word("ttl") || self.is_word("timestamp") {
                self.at += 1;
            } else {
                return Err(self.expected("TTL or TIMESTAMP after USING"));
            }
            self.term("a value", &["and", "set", "where", "if"])?;
            if self.is_word("and") {
                self.at += 1;
            } else {
                return Ok(());
            }
        }
    }

    /// `IF EXISTS`, `IF NOT EXISTS` or `IF <conditions>`, when present.
    fn condition(&mut self) -> Result<(), StatementError> {
        if !self.is_word("if") {
            return Ok(());
        }
        self.at += 1;
        if self.is_word("exists") {
            self.at += 1;
            return Ok(());
        }
        if self.is_word("not") {
            self.at += 1;
            return self.word("exists", "EXISTS after IF NOT");
        }
        self.relations("a condition after IF", &[])
    }

    /// `a = ? AND b IN (…) …`: relations joined by AND, each with an operator.
    fn relations(&mut self, what: &str, stops: &[&str]) -> Result<(), StatementError> {
        let mut stops_with_and = vec!["and"];
        stops_with_and.extend_from_slice(stops);
        loop {
            let start = self.at;
            self.term(what, &stops_with_and)?;
            let relation = &self.tokens[start..self.at];
            let has_operator = relation.iter().any(|(_, token)| {
                matches!(token, Token::Symbol('=' | '<' | '>'))
                    || matches!(token, Token::Word(word) if word == "in" || word == "contains" || word == "like")
            });
            if !has_operator {
                self.at = start;
                return Err(self.expected(format!("{what} with an operator (`=`, `<`, `IN` …)")));
            }
            if self.is_word("and") {
                self.at += 1;
            } else {
                return Ok(());
            }
        }
    }

    fn end(&self, expected: &str) -> Result<(), StatementError> {
        if self.at < self.tokens.len() {
            Err(self.expected(expected))
        } else {
            Ok(())
        }
    }
}

fn closes(opening: char) -> char {
    match opening {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// Checks the clauses of a statement of `kind`; `tokens` has no trailing `;`.
pub(super) fn check(
    kind: StatementKind,
    tokens: &[(usize, Token)],
    text: &str,
) -> Result<(), StatementError> {
    let mut cursor = Cursor {
        tokens,
        text,
        at: 1,
    };
    match kind {
        StatementKind::Insert => insert(&mut cursor),
        StatementKind::Update => update(&mut cursor),
        StatementKind::Delete => delete(&mut cursor),
    }
}

/// `INSERT INTO t (c, …) VALUES (v, …) [IF NOT EXISTS] [USING …]`, or `INSERT INTO t JSON v …`.
fn insert(cursor: &mut Cursor<'_>) -> Result<(), StatementError> {
    cursor.word("into", "INTO after INSERT")?;
    cursor.table()?;
    if cursor.is_word("json") {
        cursor.at += 1;
        cursor.term("a JSON value after JSON", &["default", "if", "using"])?;
        if cursor.is_word("default") {
            cursor.at += 1;
            if cursor.is_word("null") || cursor.is_word("unset") {
                cursor.at += 1;
            } else {
                return Err(cursor.expected("NULL or UNSET after DEFAULT"));
            }
        }
    } else {
        let columns = cursor.list("column list", |cursor| cursor.identifier("a column name"))?;
        let values_at = cursor.offset();
        cursor.word("values", "VALUES after the column list")?;
        let values = cursor.list("VALUES list", |cursor| {
            cursor.term("a value", &[]).map(drop)
        })?;
        if columns != values {
            return Err(StatementError::Syntax {
                expected: format!("{columns} values, one per column"),
                found: format!("{values} in the VALUES list"),
                at: values_at + 1,
            });
        }
    }
    for _ in 0..2 {
        cursor.condition()?;
        cursor.using()?;
    }
    cursor.end("the end of the statement (or IF NOT EXISTS, USING)")
}

/// `UPDATE t [USING …] SET a = v, … WHERE k = v … [IF …]`.
fn update(cursor: &mut Cursor<'_>) -> Result<(), StatementError> {
    cursor.table()?;
    cursor.using()?;
    cursor.word("set", "SET after the table name")?;
    loop {
        let start = cursor.at;
        cursor.term("an assignment `column = value`", &["where"])?;
        let assignment = &cursor.tokens[start..cursor.at];
        if !assignment
            .iter()
            .any(|(_, token)| *token == Token::Symbol('='))
        {
            cursor.at = start;
            return Err(cursor.expected("an assignment `column = value`"));
        }
        if cursor.is_symbol(',') {
            cursor.at += 1;
        } else {
            break;
        }
    }
    cursor.word("where", "`,` or WHERE after the assignments")?;
    cursor.relations("a relation on the primary key", &["if"])?;
    cursor.condition()?;
    cursor.end("the end of the statement (or IF …)")
}

/// `DELETE [c, …] FROM t [USING TIMESTAMP …] WHERE k = v … [IF …]`.
fn delete(cursor: &mut Cursor<'_>) -> Result<(), StatementError> {
    if !cursor.is_word("from") {
        loop {
            cursor.term("a column to delete", &["from", "where"])?;
            if cursor.is_symbol(',') {
                cursor.at += 1;
            } else {
                break;
            }
        }
    }
    cursor.word("from", "FROM in DELETE")?;
    cursor.table()?;
    cursor.using()?;
    cursor.word("where", "WHERE after the table name")?;
    cursor.relations("a relation on the primary key", &["if"])?;
    cursor.condition()?;
    cursor.end("the end of the statement (or IF …)")
}
