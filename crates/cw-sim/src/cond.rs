//! The ConnectWise `conditions` language: parser and evaluator over rendered JSON records,
//! plus `orderBy` and `fields`.
//!
//! Grammar (keywords case-insensitive):
//! ```text
//! expr    := and ( OR and )*
//! and     := unary ( AND unary )*
//! unary   := NOT unary | '(' expr ')' | cmp
//! cmp     := path [NOT] ( '=' | '!=' | '<' | '<=' | '>' | '>=' | CONTAINS | LIKE ) value
//!          | path [NOT] IN '(' value (',' value)* ')'
//! value   := "string" | 'string' | number | [datetime] | true | false | null
//! path    := name ('/' name)*          e.g. company/identifier, _info/lastUpdated
//! ```
//! Field names are matched case-insensitively; `lastUpdated` falls back to `_info/lastUpdated`.
//! String comparisons are case-insensitive (SQL Server's default collation). `like` takes `*` or `%`
//! as wildcard. A comparison with a null/missing field is false except `= null` (SQL semantics).
use serde_json::Value;
use std::cmp::Ordering;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Date(OffsetDateTime),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    Like,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp {
        path: Vec<String>,
        op: Op,
        negate: bool,
        lit: Lit,
    },
    In {
        path: Vec<String>,
        negate: bool,
        lits: Vec<Lit>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Date(String),
    LParen,
    RParen,
    Comma,
    Op(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based character position.
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |p: usize, m: String| ParseError {
        position: p + 1,
        message: m,
    };
    while i < cs.len() {
        let c = cs[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            '=' => {
                out.push((start, Tok::Op("=")));
                i += 1;
            }
            '!' => {
                if cs.get(i + 1) == Some(&'=') {
                    out.push((start, Tok::Op("!=")));
                    i += 2;
                } else {
                    return Err(err(start, "unexpected character '!'".into()));
                }
            }
            '<' | '>' => {
                if cs.get(i + 1) == Some(&'=') {
                    out.push((start, Tok::Op(if c == '<' { "<=" } else { ">=" })));
                    i += 2;
                } else if c == '<' && cs.get(i + 1) == Some(&'>') {
                    out.push((start, Tok::Op("!=")));
                    i += 2;
                } else {
                    out.push((start, Tok::Op(if c == '<' { "<" } else { ">" })));
                    i += 1;
                }
            }
            '"' | '\'' => {
                let q = c;
                i += 1;
                let mut v = String::new();
                loop {
                    match cs.get(i) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some(&ch) if ch == q => {
                            i += 1;
                            break;
                        }
                        Some(&'[')
                            if cs.get(i + 1) == Some(&'[') && cs.get(i + 2) == Some(&']') =>
                        {
                            // `[[]` is ConnectWise's escape for a literal `[`.
                            v.push('[');
                            i += 3;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(v)));
            }
            '[' => {
                i += 1;
                let mut v = String::new();
                loop {
                    match cs.get(i) {
                        None => return Err(err(start, "unterminated datetime '['".into())),
                        Some(&']') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Date(v)));
            }
            c if c.is_ascii_digit()
                || (c == '-' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let mut v = String::new();
                v.push(c);
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    v.push(cs[i]);
                    i += 1;
                }
                if i < cs.len() && (cs[i].is_alphabetic() || cs[i] == '_') {
                    return Err(err(start, format!("invalid number '{v}{}'", cs[i])));
                }
                let n: f64 = v
                    .parse()
                    .map_err(|_| err(start, format!("invalid number '{v}'")))?;
                out.push((start, Tok::Num(n)));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut v = String::new();
                while i < cs.len() && (cs[i].is_alphanumeric() || matches!(cs[i], '_' | '/' | '.'))
                {
                    v.push(cs[i]);
                    i += 1;
                }
                out.push((start, Tok::Word(v)));
            }
            other => return Err(err(start, format!("unexpected character '{other}'"))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

fn kw(t: Option<&Tok>, k: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Num(n) => format!("number {n}"),
        Tok::Date(d) => format!("[{d}]"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Op(o) => format!("'{o}'"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn at(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|t| t.0 + 1)
            .unwrap_or(self.len + 1)
    }
    fn err<T>(&self, expected: &str) -> Result<T, ParseError> {
        let found = match self.peek() {
            Some(t) => describe(t),
            None => "end of conditions".into(),
        };
        Err(ParseError {
            position: self.at(),
            message: format!("expected {expected} but found {found}"),
        })
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }
    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.and()?;
        while kw(self.peek(), "or") {
            self.pos += 1;
            let r = self.and()?;
            l = Expr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.unary()?;
        while kw(self.peek(), "and") {
            self.pos += 1;
            let r = self.unary()?;
            l = Expr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if kw(self.peek(), "not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.expr()?;
            if self.peek() != Some(&Tok::RParen) {
                return self.err("')'");
            }
            self.pos += 1;
            return Ok(e);
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let path = match self.peek() {
            Some(Tok::Word(w)) if !is_reserved(w) => w.clone(),
            _ => return self.err("a field name"),
        };
        self.pos += 1;
        let path: Vec<String> = path.split('/').map(|s| s.to_string()).collect();
        if path.iter().any(|p| p.is_empty()) {
            self.pos -= 1;
            return self.err("a field name");
        }
        let mut negate = false;
        if kw(self.peek(), "not") {
            negate = true;
            self.pos += 1;
        }
        let op = match self.peek() {
            Some(Tok::Op(o)) if !negate => match *o {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                _ => Op::Ge,
            },
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("contains") => Op::Contains,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("like") => Op::Like,
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => {
                self.pos += 1;
                if self.peek() != Some(&Tok::LParen) {
                    return self.err("'(' after in");
                }
                self.pos += 1;
                let mut lits = vec![self.value()?];
                loop {
                    match self.peek() {
                        Some(Tok::Comma) => {
                            self.pos += 1;
                            lits.push(self.value()?);
                        }
                        Some(Tok::RParen) => {
                            self.pos += 1;
                            break;
                        }
                        _ => return self.err("',' or ')'"),
                    }
                }
                return Ok(Expr::In { path, negate, lits });
            }
            _ => {
                return self.err(if negate {
                    "contains, like or in after not"
                } else {
                    "an operator (=, !=, <, <=, >, >=, contains, like, in)"
                });
            }
        };
        self.pos += 1;
        let lit = self.value()?;
        Ok(Expr::Cmp {
            path,
            op,
            negate,
            lit,
        })
    }
    fn value(&mut self) -> Result<Lit, ParseError> {
        let at = self.at();
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Date(d)) => parse_date(&d).map(Lit::Date).ok_or(ParseError {
                position: at,
                message: format!("invalid datetime [{d}], expected [yyyy-MM-ddTHH:mm:ssZ]"),
            }),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Lit::Null),
            _ => {
                self.pos -= 1;
                self.err("a value (\"string\", number, true, false, null or [datetime])")
            }
        }
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "and", "or", "not", "contains", "like", "in", "true", "false", "null",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

pub fn parse_date(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok())
        .or_else(|| OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339).ok())
}

/// Parses a conditions string. An empty string is "no filter" (`Ok(None)`).
pub fn parse(s: &str) -> Result<Option<Expr>, ParseError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        len: s.chars().count(),
    };
    let e = p.expr()?;
    if p.pos < p.toks.len() {
        return p.err("and, or or end of conditions");
    }
    Ok(Some(e))
}

/// Checks every path's first segment against `known` (case-insensitive). Empty `known` accepts all.
pub fn check_fields(e: &Expr, known: &[&str]) -> Result<(), String> {
    if known.is_empty() {
        return Ok(());
    }
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            check_fields(a, known)?;
            check_fields(b, known)
        }
        Expr::Not(a) => check_fields(a, known),
        Expr::Cmp { path, .. } | Expr::In { path, .. } => {
            if known.iter().any(|k| k.eq_ignore_ascii_case(&path[0])) {
                Ok(())
            } else {
                Err(format!("Unknown field '{}' in conditions", path.join("/")))
            }
        }
    }
}

/// Resolves a `/`-path in a JSON record, case-insensitively; `lastUpdated`/`dateEntered`/`updatedBy`/
/// `enteredBy` fall back to `_info`.
pub fn resolve<'a>(v: &'a Value, path: &[impl AsRef<str>]) -> Option<&'a Value> {
    let mut cur = v;
    for (i, seg) in path.iter().enumerate() {
        let seg = seg.as_ref();
        let obj = cur.as_object()?;
        let found = obj.get(seg).or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                .map(|(_, v)| v)
        });
        match found {
            Some(x) => cur = x,
            None if i == 0 && path.len() == 1 => {
                let alias = ["lastUpdated", "dateEntered", "updatedBy", "enteredBy"]
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(seg))?;
                return obj.get("_info").and_then(|i| i.get(*alias));
            }
            None => return None,
        }
    }
    Some(cur)
}

fn cmp_lit(v: &Value, lit: &Lit) -> Option<Ordering> {
    match (v, lit) {
        (Value::Number(n), Lit::Num(x)) => n.as_f64()?.partial_cmp(x),
        (Value::String(s), Lit::Num(x)) => s.trim().parse::<f64>().ok()?.partial_cmp(x),
        (Value::String(s), Lit::Str(x)) => Some(s.to_lowercase().cmp(&x.to_lowercase())),
        (Value::Number(n), Lit::Str(x)) => n.as_f64()?.partial_cmp(&x.trim().parse::<f64>().ok()?),
        (Value::String(s), Lit::Date(d)) => Some(parse_date(s)?.cmp(d)),
        (Value::Bool(b), Lit::Bool(x)) => Some(b.cmp(x)),
        (Value::String(s), Lit::Bool(x)) => Some(s.to_lowercase().parse::<bool>().ok()?.cmp(x)),
        _ => None,
    }
}

pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    // classic wildcard matching with backtracking
    let (mut ti, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
        pi += 1;
    }
    pi == p.len()
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn eval_cmp(v: Option<&Value>, op: Op, lit: &Lit) -> bool {
    let v = match v {
        None | Some(Value::Null) => {
            return match (op, lit) {
                (Op::Eq, Lit::Null) => true,
                (Op::Ne, Lit::Null) => false,
                _ => false,
            };
        }
        Some(v) => v,
    };
    if *lit == Lit::Null {
        return op == Op::Ne;
    }
    match op {
        Op::Contains => match (as_text(v), lit) {
            (Some(t), Lit::Str(x)) => t.to_lowercase().contains(&x.to_lowercase()),
            (Some(t), Lit::Num(x)) => t.contains(&x.to_string()),
            _ => false,
        },
        Op::Like => match (as_text(v), lit) {
            (Some(t), Lit::Str(x)) => like(&t, x),
            _ => false,
        },
        _ => {
            let Some(o) = cmp_lit(v, lit) else {
                return false;
            };
            match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
                _ => false,
            }
        }
    }
}

pub fn eval(e: &Expr, rec: &Value) -> bool {
    match e {
        Expr::And(a, b) => eval(a, rec) && eval(b, rec),
        Expr::Or(a, b) => eval(a, rec) || eval(b, rec),
        Expr::Not(a) => !eval(a, rec),
        Expr::Cmp {
            path,
            op,
            negate,
            lit,
        } => {
            let v = resolve(rec, path);
            let r = eval_cmp(v, *op, lit);
            if *negate {
                // `not contains`/`not like` on a null field stays false (SQL semantics)
                matches!(v, Some(x) if !x.is_null()) && !r
            } else {
                r
            }
        }
        Expr::In { path, negate, lits } => {
            let v = resolve(rec, path);
            let r = lits.iter().any(|l| eval_cmp(v, Op::Eq, l));
            if *negate {
                matches!(v, Some(x) if !x.is_null()) && !r
            } else {
                r
            }
        }
    }
}

/// `orderBy`: `field [asc|desc], field2 [asc|desc]`.
pub fn parse_order(s: &str) -> Result<Vec<(Vec<String>, bool)>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            [f] => out.push((f.split('/').map(String::from).collect(), false)),
            [f, d] if d.eq_ignore_ascii_case("asc") || d.eq_ignore_ascii_case("desc") => {
                out.push((
                    f.split('/').map(String::from).collect(),
                    d.eq_ignore_ascii_case("desc"),
                ))
            }
            _ => return Err(format!("invalid orderBy clause '{}'", part.trim())),
        }
    }
    Ok(out)
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let rank = |v: Option<&Value>| match v {
        None | Some(Value::Null) => 0,
        _ => 1,
    };
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

pub fn sort(items: &mut [Value], order: &[(Vec<String>, bool)]) {
    items.sort_by(|a, b| {
        for (path, desc) in order {
            let o = cmp_values(resolve(a, path), resolve(b, path));
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        cmp_values(a.get("id"), b.get("id"))
    });
}

/// `fields=id,summary,status/name`: keep only those paths.
pub fn project(v: &Value, fields: &[Vec<String>]) -> Value {
    let mut out = Value::Object(Default::default());
    for path in fields {
        if let Some(x) = resolve(v, path) {
            let mut cur = &mut out;
            for (i, seg) in path.iter().enumerate() {
                let obj = cur.as_object_mut().expect("object");
                if i + 1 == path.len() {
                    obj.insert(seg.clone(), x.clone());
                    break;
                }
                cur = obj
                    .entry(seg.clone())
                    .or_insert_with(|| Value::Object(Default::default()));
                if !cur.is_object() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(c: &str, v: &Value) -> bool {
        eval(&parse(c).unwrap().unwrap(), v)
    }

    #[test]
    fn basics() {
        let t = json!({"id": 3000000001u64, "summary": "Hello World", "closedFlag": false,
            "company": {"identifier": "SMITH & SONS"}, "_info": {"lastUpdated": "2024-05-01T10:00:00Z"}});
        assert!(m("id = 3000000001", &t));
        assert!(m("summary = \"hello world\"", &t));
        assert!(m("summary = 'Hello World'", &t));
        assert!(m("summary like \"Hello*\"", &t));
        assert!(m("summary like \"%World\"", &t));
        assert!(!m("summary like \"World*\"", &t));
        assert!(m("summary contains \"lo wo\"", &t));
        assert!(m("summary not contains \"xyz\"", &t));
        assert!(m("closedFlag = False", &t));
        assert!(m("company/identifier = \"SMITH & SONS\"", &t));
        assert!(m("lastUpdated > [2024-01-01T00:00:00Z]", &t));
        assert!(m("_info/lastUpdated <= [2024-05-01T10:00:00Z]", &t));
        assert!(!m("LastUpdated > [2024-05-01T10:00:00Z]", &t));
        assert!(m("id in (1, 3000000001)", &t));
        assert!(m("id not in (1,2)", &t));
        assert!(m(
            "(id = 1 OR id = 3000000001) and not closedFlag = true",
            &t
        ));
        assert!(m("owner = null", &t));
        assert!(!m("owner != null", &t));
        assert!(m("summary != null", &t));
        assert!(!m("owner/identifier = \"x\"", &t));
    }

    #[test]
    fn precedence() {
        let t = json!({"a": 1, "b": 2});
        // and binds tighter than or
        assert!(m("a = 9 and b = 9 or a = 1", &t));
        assert!(!m("a = 9 and (b = 9 or a = 1)", &t));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("summary = ").unwrap_err();
        assert_eq!(e.position, 11);
        assert!(e.message.contains("expected a value"), "{e}");
        let e = parse("summary \"x\"").unwrap_err();
        assert_eq!(e.position, 9);
        let e = parse("(id = 1").unwrap_err();
        assert!(e.message.contains("')'"));
        let e = parse("id = 1 id = 2").unwrap_err();
        assert_eq!(e.position, 8);
        assert!(parse("summary = \"open").is_err());
        assert!(parse("lastUpdated > [notadate]").is_err());
        assert!(parse("a ! b").is_err());
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn like_escape_and_wildcards() {
        assert!(like("abc", "a*c"));
        assert!(like("abc", "*"));
        assert!(like("a[b", "a[b"));
        assert!(!like("abc", "ab"));
        let t = json!({"s": "x[1]"});
        assert!(m("s = \"x[[]1]\"", &t));
    }

    #[test]
    fn order_and_fields() {
        let mut v = vec![
            json!({"id": 2, "n": "b"}),
            json!({"id": 1, "n": "a"}),
            json!({"id": 3, "n": "a"}),
        ];
        sort(&mut v, &parse_order("n desc").unwrap());
        assert_eq!(v[0]["id"], 2);
        assert_eq!(v[1]["id"], 1);
        assert!(parse_order("id sideways").is_err());
        let p = project(
            &json!({"id": 1, "status": {"id": 5, "name": "New"}, "x": 1}),
            &[vec!["id".into()], vec!["status".into(), "name".into()]],
        );
        assert_eq!(p, json!({"id": 1, "status": {"name": "New"}}));
    }
}
