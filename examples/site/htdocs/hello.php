<?php
// A FastCGI page: weir hands /hello.php to the php service (see weir.conf).
header('Content-Type: text/html; charset=utf-8');
$name = htmlspecialchars($_GET['name'] ?? 'visitor', ENT_QUOTES, 'UTF-8');
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>weir: PHP through FastCGI</title>
<link rel="stylesheet" href="/style.css"></head>
<body>
<h1>Hello, <?= $name ?>.</h1>
<p>This page was made by PHP <?= PHP_VERSION ?>, process <?= getmypid() ?>, which weir
started and keeps running (try <code>kill -9</code> on it and reload).</p>
<p>Request: <code><?= htmlspecialchars($_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI'], ENT_QUOTES, 'UTF-8') ?></code>,
script <code><?= htmlspecialchars($_SERVER['SCRIPT_FILENAME'], ENT_QUOTES, 'UTF-8') ?></code>.</p>
<form method="get"><label>Your name <input name="name"></label> <button>Greet</button></form>
<p><a href="/">Back</a></p>
</body>
</html>
