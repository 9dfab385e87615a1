"""Black-box check of login throttling: try wrong passwords against one account over HTTP,
as a guessing script would, and report how many were evaluated before the lockout.

    python bench/login_guessing.py --url http://127.0.0.1:8000 --username demo

"Evaluated" counts the attempts answered with the login form again (the password was checked
and refused); "refused" those answered 429 (locked out: not checked at all). The last line
is JSON: {"attempts", "evaluated", "refused", "first_refused_at", "seconds"}.
"""

import argparse
import json
import re
import secrets
import time

import requests

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def guess(session: requests.Session, url: str, username: str, password: str) -> int:
    form = session.get(url, timeout=30)
    match = CSRF_FIELD.search(form.text)
    if form.status_code == 429 or match is None:
        return form.status_code
    answer = session.post(
        url,
        data={"username": username, "password": password, "csrfmiddlewaretoken": match[1]},
        headers={"Referer": url},
        allow_redirects=False,
        timeout=30,
    )
    return answer.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="The service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--attempts", type=int, default=100)
    parser.add_argument("--path", default="/accounts/login/", help="Or /admin/login/.")
    args = parser.parse_args()
    login = args.url.rstrip("/") + args.path
    session = requests.Session()
    statuses = []
    started = time.perf_counter()
    for _ in range(args.attempts):
        statuses.append(guess(session, login, args.username, secrets.token_urlsafe(12)))
    if 302 in statuses:
        raise SystemExit("A random password logged in: is this a test account with any password?")
    unexpected = sorted(set(statuses) - {200, 429})
    if unexpected:
        raise SystemExit(f"Unexpected answers from {login}: {unexpected}")
    result = {
        "attempts": len(statuses),
        "evaluated": statuses.count(200),
        "refused": statuses.count(429),
        "first_refused_at": statuses.index(429) + 1 if 429 in statuses else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(
        f"{result['evaluated']} of {result['attempts']} passwords were checked; "
        f"{result['refused']} were refused unchecked (locked out from attempt "
        f"{result['first_refused_at']})."
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
