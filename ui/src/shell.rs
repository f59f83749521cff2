//! The HTML the gateway serves around the LiveView: the page that opens the
//! socket, the sign-in page (a plain form: the session cookie is HttpOnly,
//! so only an HTTP response can set it), and the page where a person added
//! by a brand owner chooses their password (a plain form too).

const STYLE: &str = include_str!("../assets/gps.css");
const SCRIPT: &str = include_str!("../assets/gps.js");

/// The `<head>` of every page: `extra` goes after the viewport (meta tags).
fn head(title: &str, extra: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{extra}<title>{title}</title>
<style>{STYLE}</style>
</head>"#
    )
}

/// The page of every UI address: styles, the CSRF token of the session (the
/// browser's own uploads echo it), the LiveView glue connecting to
/// `socket_path`, and the browser glue.
pub fn page(socket_path: &str, csrf_token: &str) -> String {
    let glue = dioxus_liveview::interpreter_glue(socket_path);
    let head = head("GPS", &format!("<meta name=\"gps-csrf\" content=\"{}\">\n", escape(csrf_token)));
    format!(
        r#"{head}
<body>
<div id="main"></div>
<div id="gps-connection" class="connection" hidden>Connection lost — reconnecting…</div>
{glue}
<script>{SCRIPT}</script>
</body>
</html>"#
    )
}

/// The sign-in page; `problem` says why the last attempt failed.
pub fn sign_in_page(problem: Option<&str>, email: &str, next: &str) -> String {
    let problem = problem.map(|p| format!(r#"<div class="notice error" role="alert">{}</div>"#, escape(p)));
    sign_in_with(&problem.unwrap_or_default(), email, next)
}

/// The sign-in page after a password was chosen with a mailed link.
pub fn password_set_page() -> String {
    sign_in_with(
        r#"<div class="notice ok" role="status">Your password is set. Sign in with your email address and it.</div>"#,
        "",
        "/app",
    )
}

/// The page behind the link in a "you were added to a brand" mail: the
/// person chooses their password (twice, so a typo does not lock them out).
/// `token` is the link's one-time token, sent back with the form.
pub fn set_password_page(problem: Option<&str>, token: &str) -> String {
    let problem = problem.map(|p| format!(r#"<div class="notice error" role="alert">{}</div>"#, escape(p)));
    let problem = problem.unwrap_or_default();
    let token = escape(token);
    let head = head("Choose your password · GPS", "<meta name=\"referrer\" content=\"same-origin\">\n");
    format!(
        r#"{head}
<body>
<main class="sign-in">
<h1 style="margin-bottom:16px">GPS</h1>
<div class="card">
<h2>Choose your password</h2>
{problem}
<form method="post" action="/app/set-password">
<input type="hidden" name="token" value="{token}">
<label>New password<input type="password" name="password" minlength="12" autocomplete="new-password" required autofocus></label>
<label>The same again<input type="password" name="confirm" minlength="12" autocomplete="new-password" required></label>
<button class="primary" type="submit">Set password</button>
</form>
</div>
<p class="muted small">At least 12 characters. The link in your mail works once; then you sign in with your email address.</p>
</main>
</body>
</html>"#
    )
}

fn sign_in_with(problem: &str, email: &str, next: &str) -> String {
    let email = escape(email);
    let next = escape(next);
    let head = head("Sign in · GPS", "");
    format!(
        r#"{head}
<body>
<main class="sign-in">
<h1 style="margin-bottom:16px">GPS</h1>
<div class="card">
<h2>Sign in</h2>
{problem}
<form method="post" action="/app/sign-in">
<input type="hidden" name="next" value="{next}">
<label>Email<input type="email" name="email" value="{email}" required autofocus></label>
<label>Password<input type="password" name="password" required></label>
<button class="primary" type="submit">Sign in</button>
</form>
</div>
<p class="muted small">On a fresh <code>gps up</code>, the demo credentials are in <code>demo-credentials.txt</code> in the data folder.</p>
</main>
</body>
</html>"#
    )
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_escapes_what_it_echoes() {
        let html = sign_in_page(Some("<b>no</b>"), "a\"@b", "/app/x?y=1&z=2");
        assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(html.contains("a&quot;@b"));
        assert!(html.contains("/app/x?y=1&amp;z=2"));
        assert!(!html.contains("<b>no</b>"));
    }

    #[test]
    fn the_set_password_page_sends_the_token_back_escaped_and_no_referrer_beyond_the_site() {
        let html = set_password_page(Some("<i>expired</i>"), "ab\"c");
        assert!(html.contains(r#"name="token" value="ab&quot;c""#));
        assert!(html.contains("&lt;i&gt;expired&lt;/i&gt;"));
        assert!(html.contains(r#"content="same-origin""#));
        assert!(password_set_page().contains("Your password is set"));
    }

    #[test]
    fn the_page_carries_the_socket_and_the_token() {
        let html = page("/app/ws?path=%2Fapp", "t0k\"en");
        assert!(html.contains("/app/ws?path=%2Fapp"));
        assert!(html.contains(r#"content="t0k&quot;en""#));
        assert!(html.contains("GPS.channels"));
    }
}
