#!/usr/bin/env python3
"""The MUD in a real browser: two headless Chromium sessions play it on the demo site.

    python3 tests/browser/mud.py --weir target/debug/weir

(tests/browser/run installs what this needs and runs it.)

1. Starts `weir serve -c examples/site/weir.conf --listen 127.0.0.1:PORT --workers 2` on
   a free loopback port, and waits (bounded) until it accepts and /mud/ is the MUD's page.
2. Opens two WebDriver sessions of Debian's chromium (through /usr/bin/chromedriver), each
   with its own fresh --user-data-dir, so each is its own profile with its own `mud` cookie.
3. Both open /mud/ and log in (#name, #login) under two names; each page shows its welcome
   and the first one sees the second arrive, over the page's long poll.
4. The second types `say hello from the browser` into #line and clicks #send; the first
   page's #log must show "NAME says: hello from the browser" within 5 s, without a reload
   (a marker set in the first page's window before the say must still be there).
5. Saves a screenshot of each page to target/browser/ and stops weir by its PID, always.

Prints `browser: 1 passed, 0 failed` on success; on failure, what went wrong, weir's
error log, and `browser: 0 passed, 1 failed`, and exits 1. Every wait is bounded, and a
watchdog (SIGALRM) ends a run that takes over --budget seconds.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# As the machine's notes prescribe for headless Chromium as root on a closed network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,900",
]

# Selectors of the MUD's page (examples/site/htdocs/mud/index.html).
NAME, LOGIN, LINE, SEND, LOG = "name", "login", "line", "send", "log"

SAID = "hello from the browser"


class Failure(Exception):
    """The test failed; the message says how."""


def log(msg):
    print(f"browser: {msg}", flush=True)


def claim_free_port():
    """A loopback port free a moment ago, claimed in the e2e tests' shared directory
    (tests/support/mod.rs, `free_port`) so a test running at the same time cannot take it:
    weir binds with SO_REUSEPORT, so two servers could otherwise share it."""
    claims = os.path.join(tempfile.gettempdir(), "weir-e2e-ports")
    os.makedirs(claims, exist_ok=True)
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        path = os.path.join(claims, str(port))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return port, path
    raise Failure("no free loopback port after 200 tries")


def start_weir(binary, conf, port, out_dir):
    """Starts weir; returns (process, path of its stderr file) once it accepts."""
    err_path = os.path.join(out_dir, "weir.stderr")
    err = open(err_path, "wb")
    cmd = [binary, "serve", "-c", conf, "--listen", f"127.0.0.1:{port}", "--workers", "2"]
    log("starting " + " ".join(cmd))
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
    )
    err.close()
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise Failure(f"weir exited at once with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.25).close()
            return proc, err_path
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Failure(f"weir did not accept connections on port {port} within 10 s")
        time.sleep(0.05)


def stop_weir(proc):
    """SIGTERM to weir's PID, then SIGKILL after 5 s; weir stops its launcher and the MUD."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log(f"weir (PID {proc.pid}) ignored SIGTERM for 5 s; SIGKILL")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def check_mud_page(base):
    """/mud/ must be the MUD's page (a clear failure for a weir or a file without it)."""
    try:
        with urllib.request.urlopen(base + "/mud/", timeout=5) as r:
            status, body = r.status, r.read().decode("utf-8", "replace")
    except Exception as e:  # urllib raises HTTPError for 404 and URLError on refusal
        raise Failure(f"GET {base}/mud/ failed: {e}; is the MUD in the configuration?")
    if status != 200 or 'id="login"' not in body:
        raise Failure(f"GET {base}/mud/ is not the MUD's page (status {status})")


def browser(args, profile, out_dir, tag):
    """A new WebDriver session: its own chromium, profile and chromedriver."""
    opts = Options()
    opts.binary_location = args.chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    service = Service(
        executable_path=args.chromedriver,
        log_output=os.path.join(out_dir, f"chromedriver-{tag}.log"),
    )
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    caps = driver.capabilities
    browser_version = caps.get("browserVersion", "?")
    driver_version = caps.get("chrome", {}).get("chromedriverVersion", "?").split(" ")[0]
    log(f"session {tag}: chromium {browser_version}, chromedriver {driver_version}")
    if browser_version.split(".")[:3] != driver_version.split(".")[:3]:
        raise Failure(
            f"chromium {browser_version} and chromedriver {driver_version} do not match"
        )
    return driver


def log_text(driver):
    return driver.find_element(By.ID, LOG).text


def wait_log(driver, who, text, seconds=5):
    """Waits (up to `seconds`) for `text` in the page's #log."""
    try:
        WebDriverWait(driver, seconds, poll_frequency=0.05).until(
            EC.text_to_be_present_in_element((By.ID, LOG), text)
        )
    except TimeoutException:
        raise Failure(
            f"{who}'s #log does not show {text!r} after {seconds} s; it shows:\n"
            + log_text(driver)
        )


def login(driver, base, name):
    driver.get(base + "/mud/")
    WebDriverWait(driver, 10).until(EC.visibility_of_element_located((By.ID, NAME)))
    driver.find_element(By.ID, NAME).send_keys(name)
    driver.find_element(By.ID, LOGIN).click()
    wait_log(driver, name, f"Welcome, {name}.")
    # The command form replaces the login form once the page plays.
    WebDriverWait(driver, 5).until(EC.visibility_of_element_located((By.ID, LINE)))
    cookies = [c for c in driver.get_cookies() if c["name"] == "mud"]
    if len(cookies) != 1:
        raise Failure(f"{name}'s browser holds {len(cookies)} mud cookies after the login")
    return cookies[0]["value"]


def play(args, base, out_dir, profiles):
    first, second = "ada", "grace"
    drivers = {}
    try:
        drivers[first] = browser(args, profiles[0], out_dir, first)
        drivers[second] = browser(args, profiles[1], out_dir, second)
        a, b = drivers[first], drivers[second]

        token_a = login(a, base, first)
        token_b = login(b, base, second)
        if token_a == token_b:
            raise Failure("both browsers hold the same mud cookie: not two profiles")
        # The first page hears the second arrive, over its long poll.
        wait_log(a, first, f"{second} arrives")

        # Mark the first page's window: a reload or a navigation would lose the mark.
        a.execute_script("window.weirNoReload = 'still here';")

        line = b.find_element(By.ID, LINE)
        line.send_keys(f"say {SAID}")
        b.find_element(By.ID, SEND).click()
        wait_log(b, second, f"You say: {SAID}")
        started = time.monotonic()
        wait_log(a, first, f"{second} says: {SAID}")
        log(
            f"{first}'s page showed {second}'s words "
            f"{(time.monotonic() - started) * 1000:.0f} ms after {second}'s page had its reply"
        )
        if a.execute_script("return window.weirNoReload;") != "still here":
            raise Failure(f"{first}'s page was reloaded to show the message")
    finally:
        for name, d in drivers.items():
            try:
                path = os.path.join(out_dir, f"mud-{name}.png")
                if d.save_screenshot(path):
                    log(f"screenshot {os.path.relpath(path, REPO)}")
            except Exception as e:
                log(f"no screenshot of {name}'s page: {e}")
        for d in drivers.values():
            try:
                d.quit()
            except Exception as e:
                log(f"quitting a browser session: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weir", required=True, help="the weir binary (target/debug/weir)")
    p.add_argument(
        "--config",
        default=os.path.join(REPO, "examples/site/weir.conf"),
        help="weir's configuration (default: the demo site's)",
    )
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--out", default=os.path.join(REPO, "target/browser"),
                   help="where screenshots and logs go")
    p.add_argument("--budget", type=int, default=180, help="seconds before the watchdog")
    args = p.parse_args()

    # Selenium never fetches a driver here: both paths are given, and it stays offline.
    os.environ["SE_OFFLINE"] = "true"
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)

    def watchdog(signum, frame):
        raise Failure(f"the run took over {args.budget} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(args.budget)

    weir = err_path = claim = None
    profiles = [tempfile.mkdtemp(prefix="weir-browser-profile-") for _ in range(2)]
    try:
        for path in (args.weir, args.chromium, args.chromedriver):
            if not os.access(path, os.X_OK):
                raise Failure(f"{path} is not an executable file")
        port, claim = claim_free_port()
        base = f"http://127.0.0.1:{port}"
        weir, err_path = start_weir(os.path.abspath(args.weir), args.config, port, out_dir)
        check_mud_page(base)
        play(args, base, out_dir, profiles)
        if weir.poll() is not None:
            raise Failure(f"weir exited during the test with status {weir.returncode}")
        ok = True
    except Failure as e:
        print(f"browser: FAILED: {e}", file=sys.stderr, flush=True)
        ok = False
    except WebDriverException as e:  # its text without the driver's stack trace
        print(f"browser: FAILED: {type(e).__name__}: {e.msg}", file=sys.stderr, flush=True)
        ok = False
    except Exception as e:  # an I/O error, a bug here: still a clear failure
        print(f"browser: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        ok = False
    finally:
        signal.alarm(0)
        if weir is not None:
            stop_weir(weir)
        if claim is not None:
            try:
                os.remove(claim)
            except OSError:
                pass
        for d in profiles:
            shutil.rmtree(d, ignore_errors=True)
    if not ok:
        if err_path and os.path.exists(err_path):
            with open(err_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write("---- weir stderr ----\n" + f.read())
        print("browser: 0 passed, 1 failed", flush=True)
        return 1
    print("browser: 1 passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
