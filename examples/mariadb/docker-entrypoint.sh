#!/bin/bash
# Sets the root password from MYSQL_ROOT_PASSWORD, then runs the command.
/usr/bin/mysqld_safe --skip-grant-tables && /usr/bin/mysql --socket=/var/lib/mysql/mysql.sock -uroot -e "set password for 'root'@'localhost' = PASSWORD('$MYSQL_ROOT_PASSWORD')"

exec "$@"
