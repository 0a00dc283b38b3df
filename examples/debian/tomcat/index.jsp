<%@ page contentType="text/html; charset=UTF-8" %>
<!DOCTYPE html>
<html>
<head><title>Tomcat in an rbk container</title></head>
<body>
<h1><%= application.getServerInfo() %></h1>
<p>Java <%= System.getProperty("java.version") %>, in a container built by rbk
from <code>examples/debian/tomcat/Dockerfile</code>.</p>
</body>
</html>
