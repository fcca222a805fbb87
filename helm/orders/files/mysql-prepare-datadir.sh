# Prepares MySQL's data directory on its volume (POSIX sh; the mysql image's init container).
# Cloud block volumes (GCE PD, EBS, Azure Disk) carry lost+found at their root and `mysqld
# --initialize` refuses a data directory with anything in it, so the data lives in a subdirectory.
# A volume an older chart initialised at its root must not get a second, empty database beside its
# data: refuse and name the value that keeps the old layout.
set -eu
if [ "$MYSQL_DATADIR" != "$MYSQL_VOLUME" ] && [ ! -d "$MYSQL_DATADIR" ]; then
	if [ -d "$MYSQL_VOLUME/mysql" ] || [ -e "$MYSQL_VOLUME/ibdata1" ]; then
		echo "MySQL data found at the root of the volume ($MYSQL_VOLUME), not in $MYSQL_DATADIR:" \
			"it was initialised by an older chart. Set mysql.persistence.dataSubdirectory=\"\" to" \
			"keep using it in place (docs/kubernetes.md, 'Upgrading from 0.1')." >&2
		exit 1
	fi
	mkdir -p "$MYSQL_DATADIR"
fi
echo "data directory: $MYSQL_DATADIR"
