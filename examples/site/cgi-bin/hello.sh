#!/bin/sh
# A CGI script for the demo site: weir runs it for /cgi-bin/hello.sh (see weir.conf).
# It prints a header section, a blank line, then the page: RFC 3875 in a dozen lines.
echo "Content-Type: text/html; charset=utf-8"
echo
cat <<PAGE
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Hello from CGI</title><link rel="stylesheet" href="/style.css"></head>
<body>
<h1>Hello from a CGI script</h1>
<p>weir ran <code>$SCRIPT_NAME</code> for a $REQUEST_METHOD from $REMOTE_ADDR.</p>
<table>
<tr><td>PATH_INFO</td><td><code>${PATH_INFO:-}</code></td></tr>
<tr><td>QUERY_STRING</td><td><code>${QUERY_STRING:-}</code></td></tr>
<tr><td>SERVER_PROTOCOL</td><td><code>$SERVER_PROTOCOL</code></td></tr>
<tr><td>SERVER_SOFTWARE</td><td><code>$SERVER_SOFTWARE</code></td></tr>
</table>
<p><a href="/">Home</a></p>
</body>
</html>
PAGE
