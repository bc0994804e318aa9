; Switchboard's Windows installer (Inno Setup 6). Compiled by packaging/build.py, which
; passes the version, the frozen app's folder and the signing tool:
;   ISCC /DAppVersion=1.2.3 /DNumericVersion=1.2.3.0 /DAppDir=dist\Switchboard
;        /DSign /Sswitchboard="signing command $f" installer.iss
;
; Per-user install by default (no administrator needed); /ALLUSERS installs for every
; user. IT's silent install writes the machine policy (packaging/ADMIN.md):
;   SwitchboardSetup-1.2.3.exe /VERYSILENT /SUPPRESSMSGBOXES /ALLUSERS
;     /NODEURLS="https://ai1.office.example/v1;https://ai2.office.example/v1"
;     /ALLOWCLOUD=no /BUDGETCEILING=25 /PLANNERMODELS="anthropic/claude-sonnet-4.5"
; Tokens and keys are never parameters: a command line is visible to every program.

#define AppName "Switchboard"
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef NumericVersion
  #define NumericVersion AppVersion
#endif
#ifndef AppDir
  #define AppDir "dist\Switchboard"
#endif
#ifndef AppExeName
  #define AppExeName "Switchboard.exe"
#endif
#ifndef OutputDir
  #define OutputDir "dist"
#endif

[Setup]
; Fixed for ever: Windows knows an installed Switchboard (upgrades, uninstall) by it.
AppId={{84333A8E-12DC-4E5B-A708-119351F4687D}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppName}
VersionInfoVersion={#NumericVersion}
VersionInfoProductVersion={#NumericVersion}
VersionInfoDescription={#AppName} setup
DefaultDirName={code:InstallRoot}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=commandline
UsedUserAreasWarning=no
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
WizardStyle=modern
SetupIconFile=resources\icons\app.ico
UninstallDisplayIcon={app}\{#AppExeName}
UninstallDisplayName={#AppName}
OutputDir={#OutputDir}
OutputBaseFilename=SwitchboardSetup-{#AppVersion}
Compression=lzma2
SolidCompression=yes
; Files in use by a Switchboard of another user (or one that ignored --quit) are closed
; through Windows' Restart Manager, also in a silent install.
CloseApplications=force
#ifdef Sign
; The uninstaller and Setup's own temporary copies are signed too, not just Setup.exe.
SignTool=switchboard
SignedUninstaller=yes
#endif

[Tasks]
Name: "desktopicon"; Description: "Create a &desktop icon"; Flags: unchecked
Name: "startatlogin"; Description: "&Start Switchboard when I sign in"; Flags: unchecked

[InstallDelete]
; A frozen app's libraries change between versions: stale ones must not be loaded.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#AppDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#AppExeName}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: desktopicon
Name: "{autostartup}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: startatlogin

[Run]
Filename: "{app}\{#AppExeName}"; Parameters: "--show"; Description: "Start {#AppName} now"; Flags: nowait postinstall skipifsilent

[Code]
var
  PolicyJson: String;

// Per-user installs go to %LOCALAPPDATA%\Programs. Wine cannot expand autopf there
// (it has no per-user Program Files folder), so fall back to the same place by hand.
function InstallRoot(Param: String): String;
begin
  try
    Result := ExpandConstant('{autopf}');
  except
    Result := ExpandConstant('{localappdata}\Programs');
  end;
end;

function HasSwitch(Name: String): Boolean;
var
  I: Integer;
begin
  Result := False;
  for I := 1 to ParamCount do
    if CompareText(ParamStr(I), '/' + Name) = 0 then
      Result := True;
end;

function Param(Name: String): String;
begin
  Result := Trim(ExpandConstant('{param:' + Name + '|}'));
end;

function JsonString(Value: String): String;
var
  I: Integer;
  C: String;
begin
  Result := '"';
  for I := 1 to Length(Value) do
  begin
    C := Copy(Value, I, 1);
    if (C = '"') or (C = '\') then
      Result := Result + '\' + C
    else if Ord(C[1]) < 32 then
      RaiseException('a value has a control character in it')
    else
      Result := Result + C;
  end;
  Result := Result + '"';
end;

{ "a;b; c" as a JSON list of strings, empty items dropped. }
function JsonList(Value: String; MustBeUrl: Boolean): String;
var
  Item: String;
  P: Integer;
begin
  Result := '';
  Value := Value + ';';
  while Value <> '' do
  begin
    P := Pos(';', Value);
    Item := Trim(Copy(Value, 1, P - 1));
    Delete(Value, 1, P);
    if Item <> '' then
    begin
      if MustBeUrl and (Pos('http://', Lowercase(Item)) <> 1) and
         (Pos('https://', Lowercase(Item)) <> 1) then
        RaiseException('/NODEURLS: "' + Item + '" is not an http:// or https:// address');
      if Result <> '' then
        Result := Result + ', ';
      Result := Result + JsonString(Item);
    end;
  end;
  Result := '[' + Result + ']';
end;

function IsAmount(Value: String): Boolean;
var
  I, Dots: Integer;
  C: String;
begin
  Result := Value <> '';
  Dots := 0;
  for I := 1 to Length(Value) do
  begin
    C := Copy(Value, I, 1);
    if C = '.' then
      Dots := Dots + 1
    else if (C < '0') or (C > '9') then
      Result := False;
  end;
  Result := Result and (Dots <= 1) and (Value <> '.');
end;

{ The policy file from the command line, or '' when no policy parameter was given. }
function PolicyFromParams(): String;
var
  Fields, Cloud: String;
begin
  Fields := '';
  if Param('NODEURLS') <> '' then
    Fields := Fields + ',' + #13#10 + '  "office_node_urls": ' + JsonList(Param('NODEURLS'), True);
  Cloud := Lowercase(Param('ALLOWCLOUD'));
  if (Cloud = 'yes') or (Cloud = 'true') or (Cloud = '1') then
    Fields := Fields + ',' + #13#10 + '  "cloud_allowed": true'
  else if (Cloud = 'no') or (Cloud = 'false') or (Cloud = '0') then
    Fields := Fields + ',' + #13#10 + '  "cloud_allowed": false'
  else if Cloud <> '' then
    RaiseException('/ALLOWCLOUD must be yes or no, not "' + Param('ALLOWCLOUD') + '"');
  if Param('BUDGETCEILING') <> '' then
  begin
    if not IsAmount(Param('BUDGETCEILING')) then
      RaiseException('/BUDGETCEILING must be an amount of US dollars such as 25 or 12.50, not "'
                     + Param('BUDGETCEILING') + '"');
    Fields := Fields + ',' + #13#10 + '  "budget_ceiling_usd": ' + Param('BUDGETCEILING');
  end;
  if Param('PLANNERMODELS') <> '' then
    Fields := Fields + ',' + #13#10 + '  "allowed_planner_models": '
              + JsonList(Param('PLANNERMODELS'), False);
  if Fields = '' then
    Result := ''
  else
    Result := '{' + #13#10 + '  "version": 1' + Fields + #13#10 + '}' + #13#10;
end;

function Refuse(Message: String): Boolean;
begin
  Log('Refused: ' + Message);
  SuppressibleMsgBox(Message, mbCriticalError, MB_OK, IDOK);
  Result := False;
end;

function InitializeSetup(): Boolean;
begin
  Result := True;
  try
    PolicyJson := PolicyFromParams();
  except
    Result := Refuse(GetExceptionMessage);
    exit;
  end;
  if (PolicyJson <> '') and not IsAdminInstallMode then
    Result := Refuse('The policy parameters (/NODEURLS, /ALLOWCLOUD, /BUDGETCEILING, '
                     + '/PLANNERMODELS) bound every user of this computer: install with '
                     + '/ALLUSERS, as an administrator.');
end;

{ Before files are replaced: ask this user's running Switchboard to save and quit (it
  returns once it has). Others are closed by CloseApplications. }
function PrepareToInstall(var NeedsRestart: Boolean): String;
var
  Exe: String;
  Code: Integer;
begin
  Result := '';
  Exe := ExpandConstant('{app}\{#AppExeName}');
  if FileExists(Exe) then
  begin
    Log('Asking a running Switchboard to quit: ' + Exe + ' --quit');
    if Exec(Exe, '--quit', '', SW_HIDE, ewWaitUntilTerminated, Code) then
      Log('--quit ended with ' + IntToStr(Code))
    else
      Log('--quit could not be run: ' + SysErrorMessage(Code));
  end;
end;

function InitializeUninstall(): Boolean;
var
  Code: Integer;
begin
  Result := True;
  Exec(ExpandConstant('{app}\{#AppExeName}'), '--quit', '', SW_HIDE, ewWaitUntilTerminated,
       Code);
end;

procedure WritePolicy();
var
  Folder, Tmp: String;
  Lines: TArrayOfString;
begin
  Folder := ExpandConstant('{commonappdata}\{#AppName}');
  ForceDirectories(Folder);
  Tmp := Folder + '\policy.json.new';
  SetArrayLength(Lines, 1);
  Lines[0] := PolicyJson;
  { Written whole, then put in place: Switchboard never reads half a policy. }
  if not SaveStringsToUTF8File(Tmp, Lines, False) then
    RaiseException('could not write ' + Tmp);
  DeleteFile(Folder + '\policy.json');
  if not RenameFile(Tmp, Folder + '\policy.json') then
    RaiseException('could not write ' + Folder + '\policy.json');
  Log('Wrote the machine policy ' + Folder + '\policy.json');
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and (PolicyJson <> '') then
    WritePolicy();
end;

{ Chats, the budget ledger and settings are the user's: kept unless the user asks
  (a box in an interactive uninstall, /REMOVEUSERDATA in a silent one). }
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  Data: String;
  Remove: Boolean;
begin
  if CurUninstallStep <> usPostUninstall then
    exit;
  Data := ExpandConstant('{localappdata}\{#AppName}');
  if not DirExists(Data) then
    exit;
  Remove := HasSwitch('REMOVEUSERDATA');
  if not Remove and not UninstallSilent then
    Remove := MsgBox('Also delete your Switchboard chats, settings and budget records?'
                     + #13#10#13#10 + Data, mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES;
  if Remove then
  begin
    Log('Removing the user data in ' + Data);
    DelTree(Data, True, True, True);
  end
  else
    Log('Keeping the user data in ' + Data);
end;
