//! The subset of CEL that Telemetry resources use in practice: access-log
//! `filter.expression` (`response.code >= 400`) and metric `tagOverrides`
//! values (`request.headers['x-user']`, `'literal'`).
//!
//! Supported: string, integer and boolean literals; attributes as dotted
//! paths with an optional `['key']` index; `== != < <= > >=`; `&& || !`;
//! parentheses; the string methods `startsWith`, `endsWith`, `contains`.
//! An unknown attribute evaluates to null (never equal to anything).

use std::fmt;

/// A parse error, pointing at the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid expression {expr:?} at offset {at}: {msg} (supported: literals, attributes like response.code or request.headers['x'], comparisons, && || !, startsWith/endsWith/contains)"
)]
pub struct ExprError {
    expr: String,
    at: usize,
    msg: String,
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Missing attribute.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// String.
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("unknown"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// Where attribute values come from.
pub trait Attributes {
    /// `path` is dotted (`response.code`); `index` is a `['key']` suffix.
    fn get(&self, path: &str, index: Option<&str>) -> Value;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Attr(String, Option<String>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Box<Node>, Op, Box<Node>),
    Method(Box<Node>, String, Box<Node>),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
    src: String,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn err(&self, msg: impl Into<String>) -> ExprError {
        ExprError {
            expr: self.src.to_string(),
            at: self.i,
            msg: msg.into(),
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut l = self.and()?;
        while self.eat("||") {
            l = Node::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut l = self.not()?;
        while self.eat("&&") {
            l = Node::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }

    fn not(&mut self) -> Result<Node, ExprError> {
        self.ws();
        if self.s.get(self.i) == Some(&b'!') && self.s.get(self.i + 1) != Some(&b'=') {
            self.i += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Node, ExprError> {
        let l = self.postfix()?;
        for (tok, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(tok) {
                return Ok(Node::Cmp(Box::new(l), op, Box::new(self.postfix()?)));
            }
        }
        Ok(l)
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let mut n = self.primary()?;
        loop {
            self.ws();
            let save = self.i;
            if self.eat(".") {
                let name = self.ident();
                if matches!(name.as_str(), "startsWith" | "endsWith" | "contains") && self.eat("(")
                {
                    let arg = self.or()?;
                    if !self.eat(")") {
                        return Err(self.err("expected `)`"));
                    }
                    n = Node::Method(Box::new(n), name, Box::new(arg));
                    continue;
                }
                self.i = save;
            }
            return Ok(n);
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn string(&mut self, quote: u8) -> Result<String, ExprError> {
        self.i += 1;
        let mut out = Vec::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            if c == quote {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            if c == b'\\' && self.i < self.s.len() {
                out.push(self.s[self.i]);
                self.i += 1;
                continue;
            }
            out.push(c);
        }
        Err(self.err("unterminated string"))
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.err("unexpected end"));
        };
        match c {
            b'(' => {
                self.i += 1;
                let n = self.or()?;
                if !self.eat(")") {
                    return Err(self.err("expected `)`"));
                }
                Ok(n)
            }
            b'\'' | b'"' => Ok(Node::Lit(Value::Str(self.string(c)?))),
            b'0'..=b'9' | b'-' => {
                let start = self.i;
                self.i += 1;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
                t.parse()
                    .map(|v| Node::Lit(Value::Int(v)))
                    .map_err(|_| self.err("bad integer"))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut path = self.ident();
                loop {
                    let save = self.i;
                    if self.eat(".") {
                        let next = self.ident();
                        if next.is_empty()
                            || matches!(next.as_str(), "startsWith" | "endsWith" | "contains")
                        {
                            self.i = save;
                            break;
                        }
                        path.push('.');
                        path.push_str(&next);
                    } else {
                        break;
                    }
                }
                match path.as_str() {
                    "true" => return Ok(Node::Lit(Value::Bool(true))),
                    "false" => return Ok(Node::Lit(Value::Bool(false))),
                    _ => {}
                }
                let mut index = None;
                if self.eat("[") {
                    self.ws();
                    let q = self.s.get(self.i).copied().unwrap_or(b'\'');
                    if q != b'\'' && q != b'"' {
                        return Err(self.err("index must be a quoted string"));
                    }
                    index = Some(self.string(q)?);
                    if !self.eat("]") {
                        return Err(self.err("expected `]`"));
                    }
                }
                Ok(Node::Attr(path, index))
            }
            _ => Err(self.err(format!("unexpected character {:?}", c as char))),
        }
    }
}

impl Expr {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        let mut p = Parser {
            s: src.as_bytes(),
            i: 0,
            src,
        };
        let root = p.or()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("unexpected trailing input"));
        }
        Ok(Expr {
            root,
            src: src.to_string(),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Evaluates to a value.
    pub fn eval(&self, a: &dyn Attributes) -> Value {
        eval(&self.root, a)
    }

    /// Evaluates as a condition (null and non-booleans are false).
    pub fn test(&self, a: &dyn Attributes) -> bool {
        self.eval(a) == Value::Bool(true)
    }
}

fn eval(n: &Node, a: &dyn Attributes) -> Value {
    match n {
        Node::Lit(v) => v.clone(),
        Node::Attr(p, i) => a.get(p, i.as_deref()),
        Node::Not(x) => match eval(x, a) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Node::And(l, r) => {
            Value::Bool(eval(l, a) == Value::Bool(true) && eval(r, a) == Value::Bool(true))
        }
        Node::Or(l, r) => {
            Value::Bool(eval(l, a) == Value::Bool(true) || eval(r, a) == Value::Bool(true))
        }
        Node::Cmp(l, op, r) => {
            let (l, r) = (eval(l, a), eval(r, a));
            let ord = match (&l, &r) {
                (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
                (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
                (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
                _ => None,
            };
            let Some(o) = ord else {
                return Value::Bool(*op == Op::Ne && l != r);
            };
            Value::Bool(match op {
                Op::Eq => o.is_eq(),
                Op::Ne => o.is_ne(),
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                Op::Ge => o.is_ge(),
            })
        }
        Node::Method(recv, m, arg) => match (eval(recv, a), eval(arg, a)) {
            (Value::Str(s), Value::Str(x)) => Value::Bool(match m.as_str() {
                "startsWith" => s.starts_with(&x),
                "endsWith" => s.ends_with(&x),
                _ => s.contains(&x),
            }),
            _ => Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct A;
    impl Attributes for A {
        fn get(&self, path: &str, index: Option<&str>) -> Value {
            match (path, index) {
                ("response.code", None) => Value::Int(503),
                ("request.method", None) => Value::Str("GET".into()),
                ("request.url_path", None) => Value::Str("/api/orders".into()),
                ("request.headers", Some("x-user")) => Value::Str("alice".into()),
                ("connection.mtls", None) => Value::Bool(true),
                _ => Value::Null,
            }
        }
    }

    #[test]
    fn evaluates_the_forms_telemetry_uses() {
        let t = |s: &str| Expr::parse(s).unwrap().test(&A);
        assert!(t("response.code >= 400"));
        assert!(!t("response.code < 400"));
        assert!(t("response.code >= 500 && request.method == 'GET'"));
        assert!(t(
            "response.code == 200 || request.headers['x-user'] == \"alice\""
        ));
        assert!(t("!(response.code == 200)"));
        assert!(t("request.url_path.startsWith('/api')"));
        assert!(!t("request.url_path.endsWith('/x')"));
        assert!(t("connection.mtls"));
        assert!(!t("request.headers['missing'] == 'x'"));
        assert!(t("request.headers['missing'] != 'x'"));
        assert_eq!(
            Expr::parse("'literal'").unwrap().eval(&A),
            Value::Str("literal".into())
        );
        assert_eq!(
            Expr::parse("request.headers['x-user']")
                .unwrap()
                .eval(&A)
                .to_string(),
            "alice"
        );
    }

    #[test]
    fn rejects_garbage_with_position() {
        for bad in ["response.code >=", "(a == 1", "a == 'x", "a ~ b", "a['x'"] {
            let e = Expr::parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid expression"), "{bad}: {e}");
        }
    }
}
