-- Undo 0005: the console's read model of the dead-letter topic (the topic itself keeps the letters).
DROP TABLE dead_letter_groups;
DROP TABLE dead_letters;
