//! How deeply a JSON text nests, counted without parsing it: the bound a
//! message body is held to (`MAX_BODY_DEPTH`), on frames and on what the
//! publish hook answers.

/// How deeply arrays and objects nest in a JSON text (0 for a scalar).
/// Brackets inside strings do not count.
pub fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}
