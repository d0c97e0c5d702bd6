#!/bin/sh
# As the official distribution's script: the broker API versions tool of kafka-tools.
exec java -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml -cp '/opt/kafka/libs/*' \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
