//! Source preparation before V8 sees the code.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    JavaScript,
    TypeScript,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub code: String,
    pub top_level_await: bool,
}

pub fn prepare(src: &str, lang: Language) -> Result<Prepared, SourceError> {
    match lang {
        Language::JavaScript => Ok(Prepared {
            code: src.to_string(),
            top_level_await: false,
        }),
        Language::TypeScript => Err(SourceError {
            message: "TypeScript is not supported yet".into(),
            line: 1,
            column: 1,
        }),
    }
}
